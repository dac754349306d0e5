server {
    server_name secure.example.com;
    include snippets/tls-listen.conf;
    ssl_certificate /etc/letsencrypt/live/secure.example.com/fullchain.pem; # managed by Certbot
    ssl_certificate_key /etc/letsencrypt/live/secure.example.com/privkey.pem; # managed by Certbot
    include /etc/letsencrypt/options-ssl-nginx.conf; # managed by Certbot

    location / {
        proxy_pass http://127.0.0.1:8000;
        include proxy_params;
    }
}

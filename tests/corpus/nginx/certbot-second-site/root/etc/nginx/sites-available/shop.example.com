server {
    server_name shop.example.com;

    root /var/www/example.com;
    index index.html;

    location / {
        try_files $uri $uri/ =404;
    }

    listen 443 ssl; # managed by Certbot
    ssl_certificate /etc/letsencrypt/live/shop.example.com/fullchain.pem; # managed by Certbot
    ssl_certificate_key /etc/letsencrypt/live/shop.example.com/privkey.pem; # managed by Certbot
    include /etc/letsencrypt/options-ssl-nginx.conf; # managed by Certbot
    ssl_dhparam /etc/letsencrypt/ssl-dhparams.pem; # managed by Certbot

}
server {
    if ($host = shop.example.com) {
        return 301 https://$host$request_uri;
    } # managed by Certbot


    if ($host = shop.example.org) {
        return 301 https://$host$request_uri;
    } # managed by Certbot


    listen 80;
    server_name shop.example.com;
    return 404; # managed by Certbot




}

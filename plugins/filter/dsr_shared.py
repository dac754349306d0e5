"""The filters whose code other plugins share: it lives in
plugins/plugin_utils (one module per concern, each with its documentation),
and this file only gives the playbooks their names
(dualstack.rollout.NAME)."""
from __future__ import annotations

from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_addresses
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_contract
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_nginx
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_plan
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_ss
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_sysctl
from ansible_collections.dualstack.rollout.plugins.plugin_utils import dsr_waves


class FilterModule(object):
    def filters(self):
        return {
            "dsr_ip_addresses": dsr_addresses.ip_addresses,
            "dsr_interface_map": dsr_addresses.interface_map,
            "dsr_global_addresses": dsr_addresses.global_addresses,
            "dsr_ipv4_interfaces": dsr_addresses.ipv4_interfaces,
            "dsr_listener_owners": dsr_contract.listener_owners,
            "dsr_owned_summary": dsr_contract.owned_summary,
            "dsr_live_mismatches": dsr_contract.live_mismatches,
            "dsr_pending": dsr_contract.pending,
            "dsr_contract_problems": dsr_contract.contract_problems,
            "dsr_ipv4_public": dsr_contract.ipv4_public,
            "dsr_answered": dsr_contract.answered,
            "dsr_ipv6_answer_targets": dsr_contract.ipv6_answer_targets,
            "dsr_probe_urls": dsr_contract.probe_urls,
            "dsr_services_now": dsr_contract.services_now,
            "dsr_getent_command": dsr_contract.getent_command,
            "dsr_getent_results": dsr_contract.getent_results,
            "dsr_test_sabotage": dsr_contract.test_sabotage,
            "dsr_service_recipe": dsr_contract.service_recipe,
            "dsr_with_run_states": dsr_contract.with_run_states,
            "dsr_interface_of": dsr_contract.interface_of,
            "dsr_run_state_problems": dsr_contract.run_state_problems,
            "dsr_kernel_restore": dsr_contract.kernel_restore,
            "dsr_kernel_problems": dsr_contract.kernel_problems,
            "dsr_nginx_plan": dsr_nginx.nginx_plan,
            "dsr_host_plan": dsr_plan.host_plan,
            "dsr_restore_recipe": dsr_plan.restore_recipe,
            "dsr_rollback_needed": dsr_plan.rollback_needed,
            "dsr_ss_listeners": dsr_ss.parse_ss,
            "dsr_listener_check": dsr_ss.listener_check,
            "dsr_sysctl_winners": dsr_sysctl.sysctl_winners,
            "dsr_sysctl_values": dsr_sysctl.sysctl_values,
            "dsr_sysctl_overrides": dsr_sysctl.sysctl_overrides,
            "dsr_sysctl_wanted": dsr_sysctl.sysctl_wanted,
            "dsr_sysctl_mismatch": dsr_sysctl.sysctl_mismatch,
            "dsr_sysctl_d_command": dsr_sysctl.sysctl_d_command,
            "dsr_waves": dsr_waves.waves,
            "dsr_wave_of": dsr_waves.wave_of,
            "dsr_hosts_needing_change": dsr_waves.hosts_needing_change,
        }

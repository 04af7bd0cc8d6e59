#!/bin/bash
# Runs once in a chroot of the fresh debootstrap rootfs. Everything here is shared by all boxes.
set -euo pipefail

# Host keys are per box (seeded at boot); drop the ones the package generated.
rm -f /etc/ssh/ssh_host_*

# Hardened like a real server: no root login, keys only; keys may also live in
# /etc/ssh/authorized_keys/<user> (root-owned, seeded per box by the sandbox).
mkdir -p /etc/ssh/authorized_keys
cat > /etc/ssh/sshd_config.d/10-sandbox.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys/%u
UseDNS no
CONF

# Explicit RDB save points: persistence is on, as the runbook assumes.
sed -i 's/^# *save 3600 1 300 100 60 10000/save 3600 1 300 100 60 10000/' /etc/redis/redis.conf
grep -q '^save ' /etc/redis/redis.conf || echo 'save 3600 1 300 100 60 10000' >> /etc/redis/redis.conf

# No network beyond the veth: apt would only time out.
echo "# offline sandbox box: no mirror reachable" > /etc/apt/sources.list

# Console gettys and first-boot wizards only slow boot inside nspawn.
systemctl mask console-getty.service getty@tty1.service systemd-firstboot.service >/dev/null 2>&1 || true
passwd -l root >/dev/null
# /run/nologin stays until systemd-user-sessions runs at boot; when that unit fails (seen:
# status=219/CGROUP with fourteen boxes booting at once) PAM refuses every SSH login.
# Boxes are never shut down politely, so nologin has nothing to guard: never create it.
ln -sf /dev/null /etc/tmpfiles.d/systemd-nologin.conf

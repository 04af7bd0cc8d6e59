# Operator login: key-only (key seeded per box in /etc/ssh/authorized_keys/ops), passwordless sudo.
id ops >/dev/null 2>&1 || useradd -m -s /bin/bash ops
echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops
chmod 0440 /etc/sudoers.d/ops

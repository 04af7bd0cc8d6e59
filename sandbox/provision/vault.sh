# vault: SFTP only. User vault is chrooted to /srv/vault and may write under /srv/vault/backups.
id vault >/dev/null 2>&1 || useradd -M -d /backups -s /usr/sbin/nologin vault
install -d -o root -g root -m 0755 /srv/vault
install -d -o vault -g vault -m 0750 /srv/vault/backups
cat > /etc/ssh/sshd_config.d/20-vault.conf <<'CONF'
Subsystem sftp internal-sftp
Match User vault
    ChrootDirectory /srv/vault
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
    PermitTTY no
CONF
# Debian's sshd_config names its own sftp Subsystem; two definitions are an error.
sed -i 's|^Subsystem\s\+sftp.*|# &  (sandbox: internal-sftp in sshd_config.d)|' /etc/ssh/sshd_config
# redis and sudo are not what a storage box runs.
systemctl disable redis-server.service >/dev/null 2>&1 || true

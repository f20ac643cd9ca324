#!/bin/sh
# Installed by roles/nginx as /etc/letsencrypt/renewal-hooks/deploy/toxic-nginx-reload.
# certbot runs it after each certificate it renewed ($RENEWED_LINEAGE): nginx keeps serving
# the old certificate until reloaded. Checked first, so a configuration nginx cannot load is
# never sent to it (and certbot reports this hook's failure).
set -eu
nginx -t -q
systemctl reload nginx

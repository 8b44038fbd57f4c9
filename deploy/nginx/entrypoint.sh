#!/bin/sh
# The proxy image's start: fill deploy/nginx/atelier.conf's ${ATELIER_...} values from the
# environment (nginx's own $variables are left alone, as scripts/nginx_proxy.py does on one host),
# then run nginx in the foreground, or the command given instead.
set -eu
template="${NGINX_TEMPLATE:-/etc/nginx/templates/atelier.conf}"
site="${NGINX_SITE:-/etc/nginx/conf.d/atelier.conf}"
names="$(env | sed -n 's/^\(ATELIER_[A-Z_]*\)=.*/${\1}/p' | tr '\n' ' ')"
envsubst "$names" < "$template" > "$site"
if grep -q '\${ATELIER_' "$site"; then
  echo "no value for: $(grep -o '\${ATELIER_[A-Z_]*}' "$site" | sort -u | tr '\n' ' ')" >&2
  exit 1
fi
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
exec nginx -g 'daemon off; error_log stderr;'

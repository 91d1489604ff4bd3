#!/usr/bin/env bash
# Sets the service roles' passwords (created by 01-schemas-and-roles.sql)
# from the environment of the postgres container, so docker-compose.yml
# holds each password in one variable that both this script and the
# service's DATABASE_URL read. The defaults are for local development only.
#
# The postgres image runs this once, after the .sql file, with the server
# listening on its Unix socket only; psql's variables (:'pw') quote the
# password safely.
set -euo pipefail

set_password() {
	local role="$1" password="$2"
	if [ -z "$password" ]; then
		echo "02-role-passwords.sh: empty password for $role" >&2
		exit 1
	fi
	psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
		-v role="$role" -v pw="$password" <<-'EOSQL'
		ALTER ROLE :"role" PASSWORD :'pw';
	EOSQL
}

set_password order_svc "${ORDER_DB_PASSWORD:-order_dev}"
set_password payment_svc "${PAYMENT_DB_PASSWORD:-payment_dev}"
set_password inventory_svc "${INVENTORY_DB_PASSWORD:-inventory_dev}"
set_password shipping_svc "${SHIPPING_DB_PASSWORD:-shipping_dev}"

# Sourced by benches/engines.sh and benches/ab.sh: a bench vault in a new PostgreSQL database.
#
#   new_pg_vault BINARY ADMIN_URL DATABASE DIR
#
# creates DATABASE on the server of ADMIN_URL, a key file DIR/vault.key, the vault, merchant
# 890490 and an API key (tokenize, reveal) in DIR/api-key. The caller drops the database.
new_pg_vault() {
  local bin="$1" admin="$2" db="$3" dir="$4"
  psql "$admin" -qAtc "CREATE DATABASE $db" >/dev/null
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/vault.key"; echo >>"$dir/vault.key"
  chmod 600 "$dir/vault.key"
  local kf=(--database "${admin%/*}/$db" --key-file "$dir/vault.key")
  "$bin" init "${kf[@]}" >/dev/null
  "$bin" merchant add 890490 --name Bench "${kf[@]}" >/dev/null
  "$bin" apikey create --merchant 890490 --scopes tokenize,reveal --out "$dir/api-key" "${kf[@]}" \
    >/dev/null 2>&1
}

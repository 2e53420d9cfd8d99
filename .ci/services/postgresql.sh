# Start the Debian PostgreSQL cluster for the storage tests; export the URL they connect to.
# Sourced by .ci/run (set -euo pipefail is in force).
cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  echo "no PostgreSQL cluster found (is the postgresql package installed?)" >&2
  exit 1
fi
# shellcheck disable=SC2086
pg_ctlcluster $cluster start 2>/dev/null || pg_ctlcluster $cluster status >/dev/null
for _ in $(seq 1 30); do
  su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'strongroom-test'\"" >/dev/null
export STRONGROOM_TEST_POSTGRES_URL="postgresql://postgres:strongroom-test@127.0.0.1:5432/postgres"

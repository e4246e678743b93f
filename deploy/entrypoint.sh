#!/bin/sh
# deploy/entrypoint.sh ROLE: one container's part of the production flow (README "Deploying").
#   node | coordinator   on first start: make this host's own keys and enrolment request in its own
#                        private directory ("mpc-node init" / "mpc-coordinator init"), publish the
#                        request (public) to $MPC_EXCHANGE, wait for the CA's certificate and the
#                        admin-signed genesis there, "join"; then (and on every later start) run the
#                        server with its config. No private key ever leaves $MPC_DIR.
#   bootstrap            deploy/bootstrap.sh (EVALUATION ONLY: plays the CA and the people)
# Environment:
#   MPC_NAME       this component's name (node-1 ...; coordinator)          required for node|coordinator
#   MPC_HOST       the host name the others dial (the certificate's SAN)     default: $MPC_NAME
#   MPC_PORT       the port it listens on                                     default: 7001 node, 7000 coordinator
#   MPC_DIR        its private directory (a volume of its own, mode 0700)     default: /var/lib/mpcnet/$ROLE
#   MPC_EXCHANGE   the public exchange directory (read-only is enough)       default: /exchange
#   MPC_OUTBOX     where to publish the enrolment request                     default: $MPC_EXCHANGE
#   MPC_INIT_ARGS  extra options for init (e.g. --pkcs11-module ... --pkcs11-pin-file F)
#   MPC_PASSPHRASE_FILE  a mounted secret holding the keystore passphrase: DIR/passphrase becomes a
#                  symbolic link to it before the first init (else init writes a random one into DIR)
#   MPC_POLL_S     seconds between looks at the exchange                      default: 2
# A read-only outbox (a Kubernetes ConfigMap as exchange) cannot take the request: it is printed instead,
# between "-----BEGIN MPCNET ENROLMENT REQUEST-----" lines, for the operator to hand to the CA.
set -eu

role="${1:-}"
case "$role" in
    node) server=mpc-node; port="${MPC_PORT:-7001}" ;;
    coordinator) server=mpc-coordinator; port="${MPC_PORT:-7000}" ;;
    bootstrap) exec /bin/sh /opt/mpcnet/deploy/bootstrap.sh ;;
    *) echo "entrypoint: usage: entrypoint.sh node|coordinator|bootstrap" >&2; exit 2 ;;
esac
: "${MPC_NAME:?entrypoint: MPC_NAME is required}"
host="${MPC_HOST:-$MPC_NAME}"
dir="${MPC_DIR:-/var/lib/mpcnet/$role}"
exchange="${MPC_EXCHANGE:-/exchange}"
outbox="${MPC_OUTBOX:-$exchange}"
poll="${MPC_POLL_S:-2}"
umask 077

if [ ! -f "$dir/config.json" ]; then
    if [ -n "${MPC_PASSPHRASE_FILE:-}" ]; then
        if [ ! -s "$MPC_PASSPHRASE_FILE" ]; then
            echo "entrypoint: MPC_PASSPHRASE_FILE: $MPC_PASSPHRASE_FILE is missing or empty" >&2
            exit 1
        fi
        mkdir -p "$dir"
        # never replaces a passphrase file init already wrote (its keystore is sealed under it)
        [ -e "$dir/passphrase" ] || [ -L "$dir/passphrase" ] || ln -s "$MPC_PASSPHRASE_FILE" "$dir/passphrase"
    fi
    # init never overwrites a key and completes what an interrupted run left (design.md section 1)
    # shellcheck disable=SC2086  # MPC_INIT_ARGS is a list of options
    "$server" init --dir "$dir" --name "$MPC_NAME" --endpoint "$host:$port" --listen "0.0.0.0:$port" ${MPC_INIT_ARGS:-}
    request="$dir/enrolment-request.json"
    if [ -w "$outbox" ]; then
        cp "$request" "$outbox/.$MPC_NAME.request.json.tmp"
        chmod 0644 "$outbox/.$MPC_NAME.request.json.tmp"
        mv -f "$outbox/.$MPC_NAME.request.json.tmp" "$outbox/$MPC_NAME.request.json"
        echo "entrypoint: $MPC_NAME: enrolment request published as $outbox/$MPC_NAME.request.json"
    else
        echo "-----BEGIN MPCNET ENROLMENT REQUEST-----"
        cat "$request"
        [ -z "$(tail -c 1 "$request")" ] || echo  # the end marker on a line of its own
        echo "-----END MPCNET ENROLMENT REQUEST-----"
    fi
    waited=0
    until [ -f "$exchange/genesis.json" ] && [ -f "$exchange/$MPC_NAME.pem" ] && [ -f "$exchange/ca.pem" ]; do
        if [ $((waited % 60)) -eq 0 ]; then
            echo "entrypoint: $MPC_NAME: waiting for $exchange/genesis.json, $MPC_NAME.pem and ca.pem"
        fi
        sleep "$poll"
        waited=$((waited + poll))
    done
    # join verifies the genesis (admin quorum), the certificate (chain, CN, OU, SAN, this host's
    # own TLS key) and writes $dir/config.json atomically, or refuses and writes nothing
    "$server" join --dir "$dir" --genesis "$exchange/genesis.json" --cert "$exchange/$MPC_NAME.pem" --ca "$exchange/ca.pem"
fi
exec "$server" --config "$dir/config.json"

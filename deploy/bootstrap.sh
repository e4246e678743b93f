#!/bin/sh
# deploy/bootstrap.sh: EVALUATION ONLY. One container plays the CA and every person (admins,
# approvers, a requester) of the production flow (README "Deploying"), so that
# "docker compose -f deploy/compose.yaml up" gives a cluster on one host. In a real deployment each
# of these is a different person on a different machine, and the CA key and the admins' signing
# keys never share a host with anything: this container holds all of them in one volume.
# Environment:
#   MPC_NODES       the node names, in roster order        default: node-1 node-2 node-3 node-4 node-5
#   MPC_THRESHOLD   signing threshold                       default: 3
#   MPC_DIR         its private directory                   default: /var/lib/mpcnet/bootstrap
#   MPC_EXCHANGE    the public exchange directory           default: /exchange
#   MPC_INBOX       if set, each host's request is read from $MPC_INBOX/NAME/NAME.request.json
#                   (its own outbox, mounted read-only here) and copied to the exchange; else
#                   the hosts put them into the exchange themselves
#   MPC_POLL_S      seconds between looks at the exchange   default: 2
set -eu
nodes="${MPC_NODES:-node-1 node-2 node-3 node-4 node-5}"
threshold="${MPC_THRESHOLD:-3}"
dir="${MPC_DIR:-/var/lib/mpcnet/bootstrap}"
x="${MPC_EXCHANGE:-/exchange}"
inbox="${MPC_INBOX:-}"
poll="${MPC_POLL_S:-2}"
people="admin1:admin admin2:admin approver1:approver approver2:approver requester1:requester"
umask 077

if [ -f "$x/genesis.json" ]; then
    echo "bootstrap: $x/genesis.json exists; nothing to do"
    exit 0
fi
# ca (never overwrites its key)
[ -f "$dir/ca/ca.pem" ] || mpc pki init-ca --dir "$dir/ca" --name "mpcnet evaluation CA"
install -m 0644 "$dir/ca/ca.pem" "$x/ca.pem"
# each person
for p in $people; do
    name="${p%%:*}"
    [ -f "$dir/$name/identity-request.json" ] || mpc identity init --dir "$dir/$name" --name "$name" --role "${p#*:}"
    install -m 0644 "$dir/$name/identity-request.json" "$x/$name.request.json"
done
# the hosts' requests
for n in $nodes coordinator; do
    src="$x/$n.request.json"
    if [ -n "$inbox" ]; then src="$inbox/$n/$n.request.json"; fi
    until [ -f "$src" ]; do echo "bootstrap: waiting for $src"; sleep "$poll"; done
    if [ -n "$inbox" ]; then install -m 0644 "$src" "$x/$n.request.json"; fi
done
# ca: sign every request (each is verified first)
mkdir -p "$dir/certs"
for r in "$x"/*.request.json; do
    n="$(basename "$r" .request.json)"
    [ -f "$dir/certs/$n.pem" ] || mpc pki sign-csr --ca-dir "$dir/ca" --request "$r" --out "$dir/certs/$n.pem"
    install -m 0644 "$dir/certs/$n.pem" "$x/$n.pem"  # public: readable by every host
done
# admin1: the genesis (roster indices 1.. in the order of MPC_NODES)
set -- --out "$dir/genesis.json" --threshold "$threshold" --ca "$x/ca.pem" \
    --admin "$x/admin1.request.json" --admin "$x/admin2.request.json" --admin-quorum 2 \
    --approver "$x/approver1.request.json" --approver "$x/approver2.request.json" --approval-quorum 2 \
    --requester "$x/requester1.request.json"
for n in $nodes; do set -- "$@" --node "$x/$n.request.json" "$x/$n.pem"; done
rm -f "$dir/genesis.json"  # an unsigned one left by an interrupted run
mpc genesis new "$@"
# each admin in turn, then the check; published atomically only once it verifies
for a in admin1 admin2; do
    mpc genesis sign "$dir/genesis.json" --name "$a" --signing-key "$dir/$a/signing.key"
done
mpc genesis verify "$dir/genesis.json"
install -m 0644 "$dir/genesis.json" "$x/.genesis.json.tmp"
mv -f "$x/.genesis.json.tmp" "$x/genesis.json"
echo "bootstrap: genesis published; the people's keys are in the bootstrap volume ($dir/NAME)"

#!/bin/sh
# Makes what cdi-apiserver needs and, without an operator, nothing else makes (see
# apiserver.yaml). Run once after `kubectl apply -k deploy/`; run again at any time: existing
# Secrets are kept, and the ConfigMap and caBundle are brought in line with them.
#
#   Secret    cdi/cdi-api-signing-key        id_rsa, id_rsa.pub  RSA key pair signing upload tokens
#   ConfigMap cdi/cdi-api-public             id_rsa.pub          its public half, for cdi-uploadproxy
#   Secret    cdi/cdi-apiserver-server-cert  tls.crt, tls.key,   serving cert for cdi-api.cdi.svc,
#                                            ca.crt              and the CA that signed it
#   APIService v1beta1.upload.cdi.kubevirt.io spec.caBundle = that CA
#   MutatingWebhookConfiguration cdi-api-datavolume-mutate,
#   ValidatingWebhookConfiguration cdi-api-datavolume-validate  webhooks[0].clientConfig.caBundle
#                                                                = that CA
#
# Needs openssl and kubectl. To rotate the signing key, delete the Secret and run this again
# (tokens already issued stop validating once the proxy reads the new public key).
set -eu

NS=cdi
SERVICE=cdi-api
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! kubectl -n "$NS" get secret cdi-api-signing-key >/dev/null 2>&1; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/id_rsa" 2>/dev/null
  openssl pkey -in "$work/id_rsa" -pubout -out "$work/id_rsa.pub"
  kubectl -n "$NS" create secret generic cdi-api-signing-key \
    --from-file=id_rsa="$work/id_rsa" --from-file=id_rsa.pub="$work/id_rsa.pub"
fi
kubectl -n "$NS" get secret cdi-api-signing-key -o jsonpath='{.data.id_rsa\.pub}' \
  | base64 -d >"$work/id_rsa.pub"
kubectl -n "$NS" create configmap cdi-api-public --from-file=id_rsa.pub="$work/id_rsa.pub" \
  --dry-run=client -o yaml | kubectl apply -f -

if ! kubectl -n "$NS" get secret cdi-apiserver-server-cert >/dev/null 2>&1; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=cdi-apiserver-signer" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$SERVICE.$NS.svc" -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$SERVICE" "$NS" "$SERVICE" "$NS" >"$work/ext"
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 3650 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
  kubectl -n "$NS" create secret generic cdi-apiserver-server-cert \
    --from-file=tls.crt="$work/tls.crt" --from-file=tls.key="$work/tls.key" \
    --from-file=ca.crt="$work/ca.crt"
fi
ca=$(kubectl -n "$NS" get secret cdi-apiserver-server-cert -o jsonpath='{.data.ca\.crt}')
kubectl patch apiservice v1beta1.upload.cdi.kubevirt.io --type=merge \
  -p "{\"spec\":{\"caBundle\":\"$ca\"}}"
for kind in mutatingwebhookconfiguration/cdi-api-datavolume-mutate \
  validatingwebhookconfiguration/cdi-api-datavolume-validate; do
  kubectl patch "$kind" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
done

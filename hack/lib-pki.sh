# Certificates and kubeconfigs signed by the local cluster's CA (hack/cluster.sh, hack/node/).
# shellcheck shell=bash

# gen_cert <pki dir> <name> <subject> [san]: an ECDSA key and a certificate signed by <pki dir>/ca.
gen_cert() {
  local pki=$1 name=$2 subj=$3 san=${4:-} ext
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  ext="$pki/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
  chmod 600 "$pki/$name.key"
}

# write_kubeconfig <file> <pki dir> <cert name> <user> <server URL>
write_kubeconfig() {
  local file=$1 pki=$2 cert=$3 user=$4 server=$5
  (umask 077; cat >"$file") <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: modelrunner
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: modelrunner
  context:
    cluster: modelrunner
    user: $user
current-context: modelrunner
KUBECONFIG
}

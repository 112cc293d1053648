# Sourced by the benchmark scripts (from the repository's root).

# free_ports N: N distinct free TCP ports of 127.0.0.1, on one line. All N
# are held while they are picked, so two are never the same port (two
# separate picks can be: the kernel may hand a released port out again).
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

# wait_port PORT SECONDS: waits until /healthz answers on PORT.
wait_port() {
  for _ in $(seq 1 $(($2 * 100))); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "nothing healthy on port $1 after $2 s" >&2
  return 1
}

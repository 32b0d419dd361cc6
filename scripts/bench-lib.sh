# Shared by the bench scripts (sourced): one server at a time, in $server_pid.

# start_ready LOG READY CMD...: runs CMD in the background, its output in
# LOG, and waits up to 10 s for the line READY. Tried three times a second
# apart (the kernel frees a previous server's AF_XDP socket asynchronously);
# exits the script if the server never gets ready.
start_ready() {
	local log=$1 ready=$2 attempt
	shift 2
	for attempt in 1 2 3; do
		"$@" >"$log" 2>&1 &
		server_pid=$!
		for _ in $(seq 100); do
			grep -q "$ready" "$log" && return 0
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		echo "$(basename "$0"): server did not start (attempt $attempt): $*" >&2
		cat "$log" >&2
		stop_server
		sleep 1
	done
	exit 1
}

# Stops the server with SIGINT (it detaches its XDP program on the way out).
stop_server() {
	if [[ -n $server_pid ]]; then
		kill -INT "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}

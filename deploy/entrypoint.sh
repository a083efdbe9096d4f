#!/bin/bash
# The image's entrypoint (Dockerfile), with the contract of Airflow's own image: `api-server`,
# `celery worker`, ... run as airflow subcommands (the compose services' `command:`); a command
# that starts with airflow, bash, sh, python or a path runs as given (the Helm chart's pods and
# KubernetesExecutor's task pods pass those).
#
# Stopping the container (`docker compose restart`, `docker stop`, a pod deleted) sends SIGTERM to
# this process alone. It passes it on to every experiment training in the container first, so each
# saves its full state at the end of its step and its retry resumes there (not from the last
# periodic save, up to full_checkpoint_minutes back), then to the Airflow command, which lets its
# running tasks end. The GPU workers' stop_grace_period (docker-compose.yml) gives the save its time.
set -u

case "${1:-}" in
    airflow | bash | sh | python | python3 | /*) command=("$@") ;;
    *) command=(airflow "$@") ;;
esac

training_processes() {
    local file pid
    for file in /proc/[0-9]*/cmdline; do
        pid=${file#/proc/}
        pid=${pid%/cmdline}
        [[ "$(tr '\0' ' ' <"$file" 2>/dev/null)" == *" -m training run-experiment "* ]] && echo "$pid"
    done
}

stop() {
    local pid
    for pid in $(training_processes); do
        echo "entrypoint: SIGTERM to experiment process $pid: it saves its full state, then stops" >&2
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    done
    kill -TERM "$child" 2>/dev/null
}

"${command[@]}" &
child=$!
trap stop TERM INT
# `wait` returns early when a signal arrives; wait again until the command itself has ended.
while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || exit "$status"
done

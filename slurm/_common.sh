# shellcheck shell=bash
# Shared by slurm/train-*.sbatch; sourced, never run on its own.
#
# Settings come from the environment (sbatch passes the submitting shell's environment on):
#   CONFIG         a TOML config; the same as putting `--config FILE` among the arguments
#   RUN_DIR        run directory; default runs/<job name>-<job id>, which a requeued job keeps
#   DYNGNN_PYTHON  the python that has dyngnn; default .venv/bin/python if there is one, else python3
#   MASTER_PORT    the rendezvous port on the head node; default 20000 + job id % 20000
# Arguments (`--section.key value`, `--config FILE`) go to `dyngnn train` unchanged.
#
# Preemption: `#SBATCH --signal=B:USR1@<seconds>` signals this shell only. It passes USR1
# on to every task through srun; the trainer finishes the epoch in flight, saves a
# checkpoint and exits 0; then this shell requeues the job, which resumes from that
# checkpoint (SLURM_RESTART_COUNT > 0).

cd "${DYNGNN_DIR}" || exit 2
RUN_DIR=${RUN_DIR:-runs/${SLURM_JOB_NAME}-${SLURM_JOB_ID}}
for ((i = 1; i <= $#; i++)); do # a --run.dir among the arguments wins over RUN_DIR
    case ${!i} in
    --run.dir=*) RUN_DIR=${!i#--run.dir=} ;;
    --run.dir) j=$((i + 1)) && RUN_DIR=${!j} ;;
    esac
done
if [[ -z ${DYNGNN_PYTHON:-} ]]; then
    DYNGNN_PYTHON=python3
    [[ -x .venv/bin/python ]] && DYNGNN_PYTHON=$PWD/.venv/bin/python
fi
MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))} # jobs sharing a node need their own ports
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n1)
OMP_FROM_USER=${OMP_NUM_THREADS:-}
export MASTER_ADDR MASTER_PORT OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
# shellcheck disable=SC2034 # used by the script that sources this
TRAIN_ARGS=(--run.dir "${RUN_DIR}" ${CONFIG:+--config "${CONFIG}"} "$@")

echo "[dyngnn] job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}:" \
    "${SLURM_JOB_NUM_NODES} node(s), head ${MASTER_ADDR}:${MASTER_PORT}, run dir ${RUN_DIR}, python ${DYNGNN_PYTHON}"

stop_requested=0
step_pid=
_forward_stop() {
    stop_requested=1
    echo "[dyngnn] USR1: passing it to the training step; it stops after this epoch with a checkpoint"
    if [[ -n ${step_pid} ]]; then
        kill -USR1 "${step_pid}" 2>/dev/null || true # srun sends it to every task
    fi
}
trap _forward_stop USR1

# run_step SRUN_ARGS...: `srun SRUN_ARGS...`, requeued if a USR1 stopped an unfinished run.
# Bash runs a trap only between commands, so srun runs in the background and this shell
# waits; `wait` returns early on each signal, hence the loop.
run_step() {
    srun --kill-on-bad-exit=1 "$@" &
    step_pid=$!
    while kill -0 "${step_pid}" 2>/dev/null; do
        wait "${step_pid}" || true
    done
    local status=0
    wait "${step_pid}" || status=$? # bash keeps the status of a reaped background job
    if ((stop_requested)) && ((status == 0)) && ! grep -qs '"final": true' "${RUN_DIR}/metrics.jsonl"; then
        echo "[dyngnn] requeueing job ${SLURM_JOB_ID}: it resumes from its last checkpoint in ${RUN_DIR}"
        scontrol requeue "${SLURM_JOB_ID}"
    fi
    return "${status}"
}

# run_torchrun TRAIN_ARGS...: one torchrun per node, NPROC_PER_NODE ranks each, meeting
# through c10d rendezvous on the head node.
run_torchrun() {
    if [[ -z ${OMP_FROM_USER} ]]; then # the task's CPUs shared among the node's ranks
        OMP_NUM_THREADS=$((${SLURM_CPUS_PER_TASK:-1} / NPROC_PER_NODE))
        ((OMP_NUM_THREADS >= 1)) || OMP_NUM_THREADS=1
    fi
    # srun's USR1 reaches every process of the step, torchrun's too, which dies of it by
    # default; an ignored signal stays ignored across exec, and the ranks set their own handler
    run_step --nodes="${SLURM_JOB_NUM_NODES}" --ntasks="${SLURM_JOB_NUM_NODES}" --ntasks-per-node=1 \
        bash -c 'trap "" USR1 && exec "$@"' torchrun \
        "${DYNGNN_PYTHON}" -m torch.distributed.run \
        --nnodes "${SLURM_JOB_NUM_NODES}" --nproc-per-node "${NPROC_PER_NODE}" \
        --rdzv-id "${SLURM_JOB_ID}" --rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR}:${MASTER_PORT}" \
        -m dyngnn.train "$@"
}

# GPUs per node: what SLURM allocated, else what the node has
gpus_per_node() {
    if [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        echo "${SLURM_GPUS_ON_NODE}"
    elif command -v nvidia-smi >/dev/null; then
        nvidia-smi -L | wc -l
    else
        echo 0
    fi
}

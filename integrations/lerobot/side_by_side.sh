#!/usr/bin/env bash
# vqbet's VQ-BeT through the LeRobot plug-in against LeRobot's own VQ-BeT: the same exported
# demonstrations, the same steps and batch, the same env (the vqbetlib env plug-in), the same
# evaluation seeds. Run with LeRobot's environment active (docs/lerobot.md, "Install"):
#
#   integrations/lerobot/side_by_side.sh <multireach|pusht> <out dir> [steps] [batch] [episodes] [device] [save every]
#
# multireach: 1,000 expert episodes with a 32 x 32 camera and the full state (obs_type
# pixels_state: LeRobot's VQ-BeT takes exactly one camera and a state); pusht: PushT from pixels
# (96 x 96 top camera + pusher position, obs_type pixels_agent_pos), LeRobot's own PushT layout.
# Prints the table of integrations/lerobot/side_by_side.py; everything lands in <out dir>.
# Run it again with the same arguments after a stop: each training resumes from its last checkpoint
# (saved every [save every] steps, LeRobot's own sample-exact resume), finished parts are skipped.
set -euo pipefail
task=${1:?task: multireach or pusht}
out=${2:?out dir}
steps=${3:-3000}
batch=${4:-256}
episodes=${5:-100}
device=${6:-cpu}
save_every=${7:-250}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export MUJOCO_GL=egl HF_HUB_OFFLINE=1
mkdir -p "$out"

case "$task" in
multireach)
    collect=(task=multireach images=true 'env_kwargs={width:32,height:32}')
    env=(obs_type=pixels_state observation_width=32 observation_height=32)
    lerobot=('--policy.crop_shape=[28,28]' --policy.use_group_norm=true)  # 28 x 28 crops: BatchNorm sees 1 x 1 maps
    ours=() ;;
pusht)
    collect=(task=pusht_pixels)
    env=(obs_type=pixels_agent_pos environment_state=true)
    # LeRobot's VQ-BeT makes one token per input feature but counts every dataset feature: given
    # observation.environment_state (which vqbet learns to predict, training only) it fails with
    # an IndexError. Its inputs are named: the camera and the pusher's position, as in LeRobot's pusht.
    lerobot=('--policy.input_features={"observation.images.top": {"type": "VISUAL", "shape": [3, 96, 96]}, "observation.state": {"type": "STATE", "shape": [2]}}')
    ours=('--policy.policy_options={temperature: 0.6, action_relative_to: [0, 1], vision: {downsample: 2, env_state_weight: 1.0}}') ;;
*)
    echo "error: task must be multireach or pusht, got '$task'" >&2
    exit 2 ;;
esac

demos="$out/demos.hdf5"
[ -f "$demos" ] || python "$root/scripts/collect.py" "${collect[@]}" episodes=1000 out="$demos"
export_dir="$out/demos_lerobot"
[ -d "$export_dir" ] || python "$root/scripts/convert.py" source="$demos" out="$export_dir" to=lerobot fps=20

common=(--dataset.repo_id="local/$task" --dataset.root="$export_dir" --steps="$steps" --batch_size="$batch"
    --num_workers=2 --policy.device="$device" --policy.push_to_hub=false --wandb.enable=false
    --save_freq="$save_every" --log_freq=50 --seed=0)

# train <name> <lerobot-train arguments...>: a fresh run, or the resumption of a stopped one.
train() {
    local name=$1 state
    shift
    state=$(python "$here/side_by_side.py" progress "$out/$name" --steps "$steps" --batch "$batch")
    case "$state" in
    done) echo "$name: trained ($steps steps)" ;;
    fresh)
        rm -rf "${out:?}/$name"  # stopped before its first checkpoint: nothing to keep
        lerobot-train "$@" --output_dir="$out/$name" 2>&1 | tee "$out/$name.log" ;;
    *)
        echo "$name: resuming at step $state of $steps"
        lerobot-train --config_path="$out/$name/checkpoints/last/pretrained_model/train_config.json" \
            --resume=true 2>&1 | tee -a "$out/$name.log" ;;
    esac
}

# LeRobot's VQ-BeT trains its residual VQ inside the loop: a third of the steps (its default,
# 20,000, is more than a CPU run has); ImageNet weights would be a download: none.
train lerobot_vqbet --policy.type=vqbet "${common[@]}" \
    --policy.n_vqvae_training_steps=$((steps / 3)) --policy.pretrained_backbone_weights=null \
    "${lerobot[@]}"
train vqbetlib --policy.type=vqbetlib "${common[@]}" "${ours[@]}"

for name in lerobot_vqbet vqbetlib; do
    [ -f "$out/$name.json" ] && continue  # scored already (delete it to score again)
    python "$here/side_by_side.py" evaluate "$out/$name/checkpoints/last/pretrained_model" \
        --env-type "vqbetlib_$task" --env "${env[@]}" --episodes "$episodes" --batch 50 \
        --train-log "$out/$name.log" --label "$name" --out "$out/$name.json"
done
python "$here/side_by_side.py" table "$out/lerobot_vqbet.json" "$out/vqbetlib.json"

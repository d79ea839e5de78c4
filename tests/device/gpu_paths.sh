#!/usr/bin/env bash
# Read-only checks of the GPU paths that stand-ins cannot prove, on a machine with a real
# NVIDIA GPU (run from the repository root; writes only under $OUT, changes no GPU setting):
#   1. the nvidia_driver role's own verify: its GPU detection (tasks/detect.yml, which
#      preflight and the GPU roles use too), its nvidia-smi probe and its parsing of it;
#   2. CDI generation as the nvidia_container_toolkit role runs it, into $OUT.
#
#   tests/device/gpu_paths.sh --prepare   here, before a device run: fills .cache/device-ansible
#   bash tests/device/gpu_paths.sh        there (the device tool's `carry: [.cache/device-ansible]`)
set -uo pipefail
if [ "${1:-}" = "--prepare" ]; then
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf .cache/device-ansible && mkdir -p .cache/device-ansible
  for item in ansible ansible_core-*.dist-info resolvelib resolvelib-*.dist-info yaml [Pp]y[Yy][Aa][Mm][Ll]-*.dist-info \
              jinja2 jinja2-*.dist-info markupsafe [Mm]arkup[Ss]afe-*.dist-info packaging packaging-*.dist-info; do
    cp -r "$site"/$item .cache/device-ansible/
  done
  # Pure Python only: the device's Python may be another version.
  find .cache/device-ansible \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
  du -sh .cache/device-ansible
  exit 0
fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
echo "== 1. the nvidia_driver role's verify"
# A machine without Ansible gets the ansible-core files --prepare carried in .cache/device-ansible.
playbook=(ansible-playbook)
if ! command -v ansible-playbook >/dev/null; then
  [ -d .cache/device-ansible ] || { echo "no Ansible here: run tests/device/gpu_paths.sh --prepare first and carry .cache/device-ansible"; exit 1; }
  export PYTHONPATH=$PWD/.cache/device-ansible
  playbook=(python3 -m ansible.cli.playbook -e "ansible_python_interpreter=$(command -v python3)")
fi
cat >"$OUT/gpu.yml" <<'YML'
- name: The GPU paths through the roles
  hosts: localhost
  connection: local
  gather_facts: true
  tasks:
    - name: Detect and probe as verify does
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: verify
    - name: Show what the role found
      ansible.builtin.debug:
        msg: "{{ {'gpus': nvidia_driver_gpus, 'present': nvidia_driver_gpu_present,
                  'driver': nvidia_driver_version | default(''), 'names': nvidia_driver_gpu_names | default([])} }}"
YML
ANSIBLE_CONFIG=$PWD/ansible.cfg ANSIBLE_ROLES_PATH=$PWD/roles "${playbook[@]}" "$OUT/gpu.yml" 2>&1 | tail -25
echo "== 2. CDI generation"
if command -v nvidia-ctk; then
  nvidia-ctk --version
  nvidia-ctk cdi generate --output="$OUT/nvidia.yaml" 2>&1 | tail -5
  grep -E "^kind:|^  - name:" "$OUT/nvidia.yaml" | head -20
else
  echo "nvidia-ctk not installed here"
fi

#!/usr/bin/env bash
# Read-only checks of the GPU paths that stand-ins cannot prove, on a machine with a real
# NVIDIA GPU (run from the repository root; writes only under $OUT, changes no GPU setting):
#   1. the nvidia_driver role's detection (tasks/detect.yml's own shell loop over
#      /sys/bus/pci/devices, with the role's vendor and class values), which preflight and
#      the GPU roles use;
#   2. verify's nvidia-smi probe (tasks/verify.yml's command) and the role's parsing of it;
#   3. CDI generation as the nvidia_container_toolkit role runs it, into $OUT.
# With ansible-playbook on the PATH, 1 and 2 also run through the roles themselves.
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
vendor=$(sed -n 's/^__nvidia_driver_pci_vendor: "\(.*\)"$/\1/p' roles/nvidia_driver/vars/main.yml)
class=$(sed -n 's/^__nvidia_driver_pci_class_prefix: "\(.*\)"$/\1/p' roles/nvidia_driver/vars/main.yml)
echo "== 1. detection (vendor $vendor, class $class*)"
for device in /sys/bus/pci/devices/*; do
  [ "$(cat "$device/vendor" 2>/dev/null)" = "$vendor" ] || continue
  case "$(cat "$device/class")" in
    "$class"*) echo "gpu ${device##*/} class $(cat "$device/class")" ;;
    *) echo "other NVIDIA device ${device##*/} class $(cat "$device/class") (not a GPU)" ;;
  esac
done
echo "== 2. verify's probe"
command -v nvidia-smi && nvidia-smi --query-gpu=driver_version,name --format=csv,noheader | tee "$OUT/smi.csv"
[ -s "$OUT/smi.csv" ] && python3 - "$OUT/smi.csv" <<'PY'
import sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l]
# The role: split(', ', 1) -> first is the driver version, last the GPU name.
print("parsed:", {"driver": lines[0].split(", ", 1)[0], "gpus": [l.split(", ", 1)[-1] for l in lines]})
PY
echo "== 3. CDI generation"
if command -v nvidia-ctk; then
  nvidia-ctk --version
  nvidia-ctk cdi generate --output="$OUT/nvidia.yaml" 2>&1 | tail -5
  grep -E "^kind:|^  - name:" "$OUT/nvidia.yaml" | head -20
else
  echo "nvidia-ctk not installed here"
fi
echo "== 4. the roles themselves"
# A machine without Ansible gets ansible-core's pure-Python files carried in .cache/device-ansible
# (copied from .venv's site-packages: ansible, resolvelib, yaml, jinja2, markupsafe, packaging).
playbook=(ansible-playbook)
if ! command -v ansible-playbook >/dev/null && [ -d .cache/device-ansible ]; then
  export PYTHONPATH=$PWD/.cache/device-ansible
  playbook=(python3 -m ansible.cli.playbook -e "ansible_python_interpreter=$(command -v python3)")
fi
if command -v ansible-playbook >/dev/null || [ -n "${PYTHONPATH:-}" ]; then
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
    - name: Show what the roles found
      ansible.builtin.debug:
        msg: "{{ {'gpus': nvidia_driver_gpus, 'present': nvidia_driver_gpu_present,
                  'driver': nvidia_driver_version | default(''), 'names': nvidia_driver_gpu_names | default([])} }}"
YML
  ANSIBLE_CONFIG=$PWD/ansible.cfg ANSIBLE_ROLES_PATH=$PWD/roles "${playbook[@]}" "$OUT/gpu.yml" 2>&1 | tail -25
else
  echo "no ansible-playbook here: the commands above are the roles' own"
fi
echo "== tools"
for tool in ansible-playbook docker python3 lspci; do printf '%s: %s\n' "$tool" "$(command -v "$tool" || echo absent)"; done

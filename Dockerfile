# CHIMERA multimodal survival: grand-challenge algorithm container (all three tasks).
# The base provides torch 2.14.1 with CUDA; requirements.txt pins the same release, which pip treats as satisfied
# (PEP 440 ignores the base's +cuXXX local label), so no second torch is installed.
# CUDA 12.6, not 13.0: a CUDA 13 build needs an NVIDIA driver >= 580, while any driver >= 525.60.13 runs a
# CUDA 12.x build (minor-version compatibility); the platform's T4/A10G hosts have an undocumented driver.
# PyTorch's CUDA 12 wheels have carried sm_75 (T4) and sm_86 (A10G) kernels (the DEVICE log line lists the arch list;
# not verified for this tag here: no registry reachable). docs/features.md, "Platform", has the evidence.
# BASE_IMAGE: this tag has never been pulled here (unverified). Any image with Python 3.11 works: e.g.
# `--build-arg BASE_IMAGE=python:3.11-slim --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126`
# installs the pinned torch as a CUDA 12.6 wheel (it carries its CUDA libraries). docs/submission.md, step 4.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime
FROM --platform=linux/amd64 ${BASE_IMAGE}
# pip reads it from the environment: an extra index for the pinned torch when the base does not provide it
ARG PIP_EXTRA_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/home/user/.local/bin:${PATH}" \
    CHIMERA_DEADLINE_S=1080 \
    CHIMERA_DEADLINE_RESERVE_S=60

# A non-root user with a fixed numeric id (the platform runs the image's USER).
RUN groupadd --system --gid 1001 user && \
    useradd --no-log-init --system --create-home --uid 1001 --gid 1001 user
USER 1001:1001
WORKDIR /opt/app

# openslide-bin and pyvips-binary are wheels that carry their own libraries: no apt packages are needed.
COPY --chown=1001:1001 requirements.txt /opt/app/
RUN python -m pip install --user --no-cache-dir --requirement /opt/app/requirements.txt

COPY --chown=1001:1001 chimera_surv /opt/app/chimera_surv
COPY --chown=1001:1001 resources /opt/app/resources
COPY --chown=1001:1001 inference.py /opt/app/

# Bundles and encoder weights arrive as the model tarball, extracted by the platform to /opt/ml/model.
# CHIMERA_DEADLINE_S: seconds for one case (slides stop in time, keeping an evenly spread prefix); change it with
# `docker run -e CHIMERA_DEADLINE_S=...` or here, never by retraining. 1080 s leaves 2 of the 20 minutes spare.
ENTRYPOINT ["python", "inference.py", "--input", "/input", "--output", "/output", "--model", "/opt/ml/model"]

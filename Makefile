# AMOS22 task 1 submission toolkit. `make help` lists every target and variable.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Your own values, remembered by `make config VAR=value` in the git-ignored local.mk, come first;
# tests and CI set AMOSKIT_NO_LOCAL_MK=1 and never read it. The command line still wins.
LOCAL_MK ?= local.mk
ifeq ($(AMOSKIT_NO_LOCAL_MK),)
-include $(LOCAL_MK)
endif

# Each variable's `## text` is its line in `make help`; the values are trimmed below.
TEAMNAME        ?= demoteam  ## team name registered with AMOS22: lowercase letters only (image and tarball name)
TASK            ?= task1  ## challenge task, part of the tarball name TEAMNAME-TASK.tar.gz
VERSION         ?= $(shell cat VERSION)  ## image version tag and OCI label
BASE_IMAGE      ?= python:3.11-slim-bookworm  ## base of both image stages (needs Python 3.11)
LOCAL_BASE_IMAGE ?= amosseg-base:bookworm  ## name of the debootstrap base that make base-image builds (offline fallback)
TORCH_VERSION   ?= $(shell sed -n 's/^IMAGE_TORCH_VERSION = "\(.*\)"/\1/p' amoskit/contract.py)  ## torch inside the image (2.7.1+cu118 runs on NVIDIA drivers >= 450.80)
TORCH_INDEX_URL ?= $(shell sed -n 's/^IMAGE_TORCH_INDEX_URL = "\(.*\)"/\1/p' amoskit/contract.py)  ## extra pip index torch comes from (empty: PyPI only)
WHEELHOUSE      ?=  ## folder of wheels for an offline build (make wheelhouse writes wheelhouse/); empty: install online
WEIGHTS         ?= weights  ## trained nnU-Net v2 model folder copied to /workspace/weights
FOLDS           ?=  ## folds the image runs, e.g. 0,1 or all (fold_all); empty: nnU-Net's choice (every fold_N; fold_all when alone)
CHECKPOINT      ?=  ## checkpoint file each fold loads, e.g. checkpoint_best.pth; empty: checkpoint_final.pth
ENGINE          ?=  ## fast (ours), nnunet (nnU-Net's own predictor in the image, exact) or empty: make build picks and says why
TRAINER_CODE    ?=  ## your custom nnU-Net trainer's .py file or folder, copied into the image for ENGINE=nnunet
INPUT           ?= samples/images  ## folder of *.nii.gz cases that make run segments (mounted read-only)
OUTPUT          ?= output  ## folder make run writes the label maps to
DIST            ?= dist  ## folder make package writes TEAMNAME-TASK.tar.gz to
LABELS          ?= samples/labels  ## reference label maps for make validate / make verify-load
RUN_TIMEOUT     ?= 3600  ## seconds verify-load allows each container run before it kills and removes it
VERIFY_ARGS     ?=  ## extra verify-load options, e.g. --max-unpacked-gb 100 (see python -m amoskit.verbs.verify_load --help)
STORE           ?= auto  ## image store of verify-load's throwaway dockerd: auto (your engine's), classic or containerd (Docker 24+)
SAMPLES         ?= 4  ## number of synthetic cases make samples writes
TORCH_HOST_VERSION ?= 2.13.0  ## torch of the host virtualenv's full set (make setup-dev, make test) and of the offline fallback image
PYTEST_ARGS     ?=  ## extra pytest arguments for make test, e.g. PYTEST_ARGS='-m "not docker"'
BENCH_ARGS      ?=  ## extra bench-inference options, e.g. --case my.nii.gz --tta 0 (python -m amoskit.bench.inference --help)
VENV            ?= .venv  ## host virtualenv of the tools

# The documented variables, and those given on this command line (for make config), read before
# the trimming below turns every origin into "override".
CONFIG_VARS := $(shell sed -nE 's/^([A-Z_]+) +\?=.*##.*/\1/p' $(firstword $(MAKEFILE_LIST)))
CLI_VARS := $(filter-out LOCAL_MK AMOSKIT_NO_LOCAL_MK,$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))

# `VAR ?= value  ## text` keeps the spaces before `##` in the value: strip them.
TRIMMED := TEAMNAME TASK VERSION BASE_IMAGE LOCAL_BASE_IMAGE TORCH_VERSION TORCH_INDEX_URL WHEELHOUSE \
           WEIGHTS FOLDS CHECKPOINT ENGINE TRAINER_CODE INPUT OUTPUT DIST LABELS SAMPLES TORCH_HOST_VERSION PYTEST_ARGS VENV \
           RUN_TIMEOUT VERIFY_ARGS STORE BENCH_ARGS
$(foreach v,$(TRIMMED),$(eval override $(v) := $(strip $(value $(v)))))
PY := $(VENV)/bin/python

export TEAMNAME TASK VERSION BASE_IMAGE TORCH_VERSION TORCH_INDEX_URL WHEELHOUSE DIST WEIGHTS FOLDS CHECKPOINT

.PHONY: help config setup setup-dev samples train-demo evaluate-demo base-image wheelhouse build run package \
        verify-load validate demo test bench-inference bench-build bench-package bench-kinds kinds-end-to-end nnunet-zoo clean check-teamname

help: ## list targets and variables
	@echo "Targets:"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1|\2/' | column -t -s'|'
	@echo
	@echo "Variables (override on the command line, e.g. make build TEAMNAME=myteam):"
	@grep -hE '^[A-Z_]+ +\?=.*## ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) +\?= *(.*[^ ]|) *## (.*)/  \1|\3 [default: \2]/' | sed -e 's/\$$(shell cat VERSION)/the VERSION file/' -e "s/\$$(shell sed -n 's.^\([A-Z_]*\) .*contract.py)/\1 in amoskit\/contract.py/" | column -t -s'|'

config: ## remember the variables given with it in local.mk (git-ignored), e.g. make config TEAMNAME=myteam
	@python3 -m amoskit.local_config '$(LOCAL_MK)' '$(CONFIG_VARS)' $(foreach v,$(CLI_VARS),'$(v)=$($(v))')

check-teamname: ## refuse a TEAMNAME that is not lowercase letters only (before Docker is touched)
	@python3 -m amoskit.contract teamname '$(TEAMNAME)' $(or $(filter build run package verify-load demo,$(MAKECMDGOALS)),build)

# Two stamps in one venv. The light one (make setup): what the verbs import, no torch
# (requirements-host.txt). The full one (make setup-dev): + torch TORCH_HOST_VERSION, nnU-Net and
# pytest (requirements-dev*.txt), pulled by the targets that need them (test, bench-*, ...).
# pip shows its own progress: a bar on a terminal, a line per download in a log.
PIP := $(VENV)/bin/pip install --progress-bar on
HOST_STAMP := $(VENV)/.stamp-host
FULL_STAMP := $(VENV)/.stamp

$(HOST_STAMP): pyproject.toml requirements-host.txt inference/requirements.txt inference/requirements-nnunet.txt
	python3 -m venv $(VENV)
	$(PIP) -r requirements-host.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(FULL_STAMP): $(HOST_STAMP) requirements-dev.txt requirements-dev-nodeps.txt inference/requirements*.txt
	$(PIP) torch==$(TORCH_HOST_VERSION)
	$(PIP) -r requirements-dev.txt
	$(PIP) --no-deps -r requirements-dev-nodeps.txt
	touch $@

setup: $(HOST_STAMP) ## host virtualenv for the verbs (build, run, package, verify-load, ...): no torch (quick when unchanged)

setup-dev: $(FULL_STAMP) ## setup + torch TORCH_HOST_VERSION, nnU-Net and pytest: for test, bench-*, train-demo, ... (which pull it themselves)

samples: $(HOST_STAMP) ## write SAMPLES synthetic CT cases to samples/images and samples/labels
	$(PY) -m amoskit.data.samples --out samples --count $(SAMPLES)

train-demo: $(FULL_STAMP) ## train the built-in demo model on synthetic phantoms into WEIGHTS (under 30 min on 2 CPU cores)
	$(PY) -m amoskit.data.train_demo --out $(WEIGHTS)

evaluate-demo: $(FULL_STAMP) ## per-organ Dice of the model in WEIGHTS on held-out phantoms, through run_inference.py
	$(PY) -m amoskit.data.evaluate_demo --model $(WEIGHTS)

base-image: ## build LOCAL_BASE_IMAGE (Debian bookworm + Python 3.11) with debootstrap: no registry needed
	docker/base_image.sh $(LOCAL_BASE_IMAGE)

wheelhouse: $(HOST_STAMP) ## download torch TORCH_VERSION + inference requirements (both engines; timm + torchvision for Primus) as wheels into WHEELHOUSE (default wheelhouse/)
	docker/make_wheelhouse.sh $(or $(WHEELHOUSE),wheelhouse) $(TORCH_VERSION) '$(TORCH_INDEX_URL)' $(PY)

build: check-teamname $(HOST_STAMP) ## build the image TEAMNAME:VERSION and TEAMNAME:latest (both stages) and print its table
	$(PY) -m amoskit.verbs.build --teamname '$(TEAMNAME)' --task '$(TASK)' --version '$(VERSION)' \
	    --base-image '$(BASE_IMAGE)' --torch-version '$(TORCH_VERSION)' --torch-index-url '$(TORCH_INDEX_URL)' \
	    --wheelhouse '$(WHEELHOUSE)' --weights '$(WEIGHTS)' --folds '$(FOLDS)' --checkpoint '$(CHECKPOINT)' \
	    --engine '$(ENGINE)' --trainer-code '$(TRAINER_CODE)'

run: check-teamname $(HOST_STAMP) ## run TEAMNAME:latest on INPUT into OUTPUT exactly as the organisers do
	$(PY) -m amoskit.verbs.run --image '$(TEAMNAME):latest' --input '$(INPUT)' --output '$(OUTPUT)'

package: check-teamname $(HOST_STAMP) ## save the image as DIST/TEAMNAME-TASK.tar.gz
	$(PY) -m amoskit.verbs.package --teamname $(TEAMNAME) --task $(TASK) --dist $(DIST)

verify-load: check-teamname $(HOST_STAMP) ## load DIST/TEAMNAME-TASK.tar.gz afresh and run it on INPUT like the organisers
	$(PY) -m amoskit.verbs.verify_load $(DIST)/$(TEAMNAME)-$(TASK).tar.gz --teamname $(TEAMNAME) --samples $(INPUT) --labels $(LABELS) --store $(STORE) --timeout $(RUN_TIMEOUT) $(VERIFY_ARGS)

validate: $(HOST_STAMP) ## check OUTPUT against INPUT (names, geometry, labels), score it against LABELS (Dice, NSD) and write the page OUTPUT.validate.html
	$(PY) -m amoskit.verbs.validate $(INPUT) $(OUTPUT) $(LABELS)

# The offline fallback of make demo: a local debootstrap base, a wheelhouse of the host's torch.
FALLBACK_VARS := BASE_IMAGE=$(LOCAL_BASE_IMAGE) WHEELHOUSE=$(or $(WHEELHOUSE),wheelhouse) \
                 TORCH_VERSION=$(TORCH_HOST_VERSION) TORCH_INDEX_URL=

demo: check-teamname setup samples ## the whole job on the demo model and sample cases: build, run, package, verify-load
	@if $(PY) -m amoskit.verbs.build --check-base --base-image '$(BASE_IMAGE)'; then \
	    $(MAKE) --no-print-directory build; \
	else \
	    echo; \
	    echo "notice: BASE_IMAGE=$(BASE_IMAGE) cannot be pulled (no registry?): taking the offline fallback:"; \
	    echo "notice:   make base-image wheelhouse build $(FALLBACK_VARS)"; \
	    echo; \
	    $(MAKE) --no-print-directory base-image wheelhouse build $(FALLBACK_VARS); \
	fi
	$(MAKE) --no-print-directory run
	$(MAKE) --no-print-directory package
	$(MAKE) --no-print-directory verify-load

test: $(FULL_STAMP) ## run the tests (REQUIRE_DOCKER=1: no Docker engine is a failure, not a skip)
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench-inference: $(FULL_STAMP) ## time this engine against nnU-Net's own predictor on the same model and case
	ENGINE='$(ENGINE)' TRAINER_CODE='$(TRAINER_CODE)' $(PY) -m amoskit.bench.inference --model $(WEIGHTS) $(BENCH_ARGS)

bench-package: check-teamname $(FULL_STAMP) ## time make package against the organisers' docker save piped into gzip
	$(PY) -m amoskit.bench.package --teamname $(TEAMNAME) --variants isal:auto,pigz:2 --repeat 3

bench-build: check-teamname $(FULL_STAMP) ## time a cold build and a rebuild after a one-file code change (ratio, rebuilt layers)
	$(PY) -m amoskit.bench.build --base-image '$(BASE_IMAGE)' --torch-version '$(TORCH_VERSION)' \
	    --torch-index-url '$(TORCH_INDEX_URL)' --wheelhouse '$(WHEELHOUSE)' --weights '$(WEIGHTS)'

bench-kinds: $(FULL_STAMP) ## every nnU-Net folder kind (zoo, old 2.2.1 plans, nnUNetTrainerBN) through ENGINE (default fast) vs nnUNetv2_predict: agreement, time, ratio
	$(PY) -m amoskit.bench.nnunet_kinds --zoo .cache/nnunet-zoo --engine $(or $(filter nnunet,$(ENGINE)),fast)

kinds-end-to-end: $(FULL_STAMP) ## every kind bench-kinds runs (and an ENGINE=nnunet cascade) through make build, run, package, verify-load: one table
	$(PY) -m amoskit.bench.kinds_end_to_end

nnunet-zoo: $(FULL_STAMP) ## build (or reuse) .cache/nnunet-zoo: real nnU-Net v2 folders of every kind + nnU-Net's predictions (about 20 min on 2 cores, then cached)
	$(PY) -m amoskit.devtools.nnunet_zoo --out .cache/nnunet-zoo

clean: ## remove what make run / package / samples / validate / test wrote (output/, dist/, samples/, OUTPUT.validate.html, caches); keeps wheelhouse/ and images
	rm -rf output dist samples .pytest_cache $(OUTPUT).validate.html
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

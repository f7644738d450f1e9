# Release container targets, included by the top-level Makefile.
#   make build-release-container   build the image (podman, else docker)
#   make start-release-container   first time: create the container `skyport` and run its bootstrap
#                                  prompt; afterwards: start swm-core in the background

CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
RELEASE_IMAGE ?= localhost/skyport:latest
RELEASE_CONTAINER ?= skyport
RELEASE_BASE_IMAGE ?= docker.io/library/node:20-bookworm-slim
RELEASE_PORT ?= 8443
# The host's directories for the bundle and the spool: SWM_HOME and SWM_SPOOL, as for swm and swm-core.
SWM_HOME ?= $(HOME)/.swm
SWM_SPOOL ?= $(SWM_HOME)/spool

.PHONY: build-release-container start-release-container

# `build` (the top-level Makefile's) compiles dist/, which the image copies.
build-release-container: build
	@test -n "$(CONTAINER_ENGINE)" || { echo "build-release-container: neither podman nor docker is installed" >&2; exit 1; }
	$(CONTAINER_ENGINE) build \
		--file container/Containerfile \
		$(if $(findstring podman,$(CONTAINER_ENGINE)),--ignorefile container/Containerfile.dockerignore) \
		--build-arg BASE_IMAGE=$(RELEASE_BASE_IMAGE) \
		--tag $(RELEASE_IMAGE) .

# A new container's first start runs the bootstrap prompt in the foreground (it ends by itself) unless
# the host already has a spool; every other start runs swm-core detached.
start-release-container:
	@test -n "$(CONTAINER_ENGINE)" || { echo "start-release-container: neither podman nor docker is installed" >&2; exit 1; }
	@mkdir -p "$(SWM_HOME)" "$(SWM_SPOOL)"
	@if $(CONTAINER_ENGINE) container inspect $(RELEASE_CONTAINER) >/dev/null 2>&1; then \
		echo "starting the existing container $(RELEASE_CONTAINER)"; \
		$(CONTAINER_ENGINE) start $(RELEASE_CONTAINER); \
	else \
		echo "creating the container $(RELEASE_CONTAINER) from $(RELEASE_IMAGE)"; \
		$(CONTAINER_ENGINE) create --name $(RELEASE_CONTAINER) \
			--volume "$(SWM_HOME):/root/.swm" \
			--volume "$(SWM_SPOOL):/root/.swm/spool" \
			--publish $(RELEASE_PORT):8443 \
			--env SKYPORT_CORE_URL="wss://localhost:$(RELEASE_PORT)" \
			--env SKYPORT_USER="$${SKYPORT_USER:-$$(id -un)}" \
			--env SKYPORT_USER_ID="$${SKYPORT_USER_ID:-$$(id -u)}" \
			--env SKYPORT_REMOTE_LOCATION="$${SKYPORT_REMOTE_LOCATION:-eastus2}" \
			$(RELEASE_IMAGE) && \
		if [ -f "$(SWM_SPOOL)/config.json" ]; then \
			$(CONTAINER_ENGINE) start $(RELEASE_CONTAINER); \
		else \
			$(CONTAINER_ENGINE) start --attach $(RELEASE_CONTAINER); \
		fi; \
	fi

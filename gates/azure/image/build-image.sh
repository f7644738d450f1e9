#!/usr/bin/env bash
# Builds the Sky Port node image in an Azure Compute Gallery: Ubuntu 24.04 with the container runtime (podman, or
# docker) already installed and the package index fresh, so that a partition's cloud-init only writes keys and
# configuration (README.md, "Custom image"). Prints the image version id to put in the gate's `customImageId`.
#
# Needs the Azure CLI, logged in (`az login`) with rights to create resource groups, VMs and galleries. Costs a
# builder VM for about ten minutes plus the image's storage (a few cents a month per replica). Never run in CI.
#
#   SKYPORT_IMAGE_LOCATION=eastus2 SKYPORT_IMAGE_REGIONS="eastus2 westus3" gates/azure/image/build-image.sh
set -euo pipefail

LOCATION=${SKYPORT_IMAGE_LOCATION:-eastus}
# Where the version is replicated: the gate's location and every fallback region (a region without a replica cannot boot it).
REGIONS=${SKYPORT_IMAGE_REGIONS:-$LOCATION}
GROUP=${SKYPORT_IMAGE_GROUP:-skyport-images}
GALLERY=${SKYPORT_IMAGE_GALLERY:-skyport}
DEFINITION=${SKYPORT_IMAGE_DEFINITION:-skyport-node}
RUNTIME=${SKYPORT_IMAGE_RUNTIME:-podman}           # or docker
BASE=${SKYPORT_IMAGE_BASE:-Canonical:ubuntu-24_04-lts:server:latest}
SIZE=${SKYPORT_IMAGE_BUILDER_SIZE:-Standard_D2s_v5}
VERSION=${SKYPORT_IMAGE_VERSION:-$(date -u +%Y.%m%d.%H%M)}
BUILDER="skyport-image-builder-$(date -u +%s)"
BUILD_GROUP="${BUILDER}-rg"

case "$RUNTIME" in
  podman) PACKAGES='["podman", "uidmap", "slirp4netns", "fuse-overlayfs"]' ;;
  docker) PACKAGES='["docker.io"]' ;;
  *) echo "SKYPORT_IMAGE_RUNTIME must be podman or docker" >&2; exit 2 ;;
esac

cleanup() {
  echo "deleting the builder's resource group ${BUILD_GROUP}" >&2
  az group delete --name "$BUILD_GROUP" --yes --no-wait >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "gallery ${GALLERY} and image definition ${DEFINITION} in ${GROUP} (${LOCATION})" >&2
az group create --name "$GROUP" --location "$LOCATION" --tags skyport-purpose=images -o none
az sig create --resource-group "$GROUP" --gallery-name "$GALLERY" -o none 2>/dev/null || true
az sig image-definition create --resource-group "$GROUP" --gallery-name "$GALLERY" --gallery-image-definition "$DEFINITION" \
  --publisher skyport --offer node --sku "ubuntu-24_04-${RUNTIME}" --os-type Linux --os-state Generalized \
  --hyper-v-generation V2 --architecture x64 -o none 2>/dev/null || true

# The builder: the base image, the runtime installed by cloud-init, then generalized.
CLOUD_INIT=$(mktemp)
cat >"$CLOUD_INIT" <<CONFIG
#cloud-config
package_update: true
package_upgrade: true
packages: ${PACKAGES}
runcmd:
  - [sh, -c, "apt-get clean && rm -rf /var/lib/apt/lists/*.lz4 /tmp/* /var/tmp/*"]
CONFIG

echo "builder VM ${BUILDER} (${SIZE}, ${BASE})" >&2
az group create --name "$BUILD_GROUP" --location "$LOCATION" --tags skyport-purpose=image-builder -o none
az vm create --resource-group "$BUILD_GROUP" --name "$BUILDER" --image "$BASE" --size "$SIZE" \
  --admin-username skyport --generate-ssh-keys --public-ip-address "" --nsg "" \
  --custom-data "$CLOUD_INIT" --os-disk-delete-option Delete --nic-delete-option Delete -o none
rm -f "$CLOUD_INIT"

echo "waiting for cloud-init, then generalizing" >&2
az vm run-command invoke --resource-group "$BUILD_GROUP" --name "$BUILDER" --command-id RunShellScript \
  --scripts "cloud-init status --wait; command -v ${RUNTIME} >/dev/null && waagent -deprovision+user -force && sync" -o none
az vm deallocate --resource-group "$BUILD_GROUP" --name "$BUILDER" -o none
az vm generalize --resource-group "$BUILD_GROUP" --name "$BUILDER" -o none

echo "image version ${VERSION}, replicated to: ${REGIONS}" >&2
# shellcheck disable=SC2086
az sig image-version create --resource-group "$GROUP" --gallery-name "$GALLERY" --gallery-image-definition "$DEFINITION" \
  --gallery-image-version "$VERSION" --virtual-machine "$(az vm show -g "$BUILD_GROUP" -n "$BUILDER" --query id -o tsv)" \
  --target-regions $REGIONS --replica-count 1 --storage-account-type Standard_LRS -o none

az sig image-version show --resource-group "$GROUP" --gallery-name "$GALLERY" --gallery-image-definition "$DEFINITION" \
  --gallery-image-version "$VERSION" --query id -o tsv

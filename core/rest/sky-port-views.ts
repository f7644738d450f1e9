import type { Flavor, Image, Remote } from '../../terminal-protocol/common.js';
import type { Job, Resource } from '../../terminal-protocol/job.js';

/**
 * The shapes of the original Sky Port REST API (SKYPORT-REFERENCE.md), made from what the WebSocket API
 * returns. Pure. Ids are names in this core: a job's `remote_id` and `flavor_id` are the `id` of a remote and
 * a flavor here, so a client can join them.
 */

const MiB = 1024 * 1024;

export interface FlavorView {
  id: string;
  name: string;
  remote_id: string;
  resources: Resource[];
  price: number;
}

export interface ImageView {
  id: string;
  name: string;
  remote_id: string;
  kind: string;
  comment: string;
}

export interface RemoteView {
  id: string;
  name: string;
  account_id: string | null;
  server: string | null;
  port: number | null;
  kind: string;
  default_image_id: string | null;
  default_flavor_id: string | null;
}

export interface NodeRoleView {
  id: string;
  name: string;
  comment: string;
}

export interface NodeView {
  id: string;
  name: string;
  host: string;
  api_port: number;
  state_power: 'up' | 'down';
  state_alloc: 'idle' | 'busy' | 'offline' | 'stopped' | 'maint';
  resources: Resource[];
  roles: NodeRoleView[];
}

/** A flavor's resources per node; `mem` and `storage` in bytes. */
export const flavorResources = (f: Flavor): Resource[] => [
  { name: 'cpus', count: f.cpus },
  { name: 'gpus', count: f.gpus },
  { name: 'mem', count: f.memMiB * MiB },
  { name: 'storage', count: f.diskMiB * MiB },
];

export const flavorView = (f: Flavor): FlavorView => ({
  id: f.name,
  name: f.name,
  remote_id: f.remote,
  resources: flavorResources(f),
  price: f.pricePerHour ?? 0,
});

export const imageView = (i: Image): ImageView => ({ id: i.id, name: i.name, remote_id: i.remote, kind: i.kind, comment: i.comment ?? '' });

/** A remote and the address of its gate (null when the gate is not configured here). Accounts are not a concept of this core. */
export const remoteView = (r: Remote, gate: { host: string; port: number } | undefined): RemoteView => ({
  id: r.name,
  name: r.name,
  account_id: null,
  server: gate?.host ?? null,
  port: gate?.port ?? null,
  kind: r.kind,
  default_image_id: r.defaultImage,
  default_flavor_id: r.defaultFlavor,
});

const roles: Record<'head' | 'compute', NodeRoleView> = {
  head: { id: 'head', name: 'head', comment: "the job's first node: its inputs, its script and its outputs live there" },
  compute: { id: 'compute', name: 'compute', comment: 'another node of the same partition' },
};

/**
 * The nodes of live jobs' partitions, from the jobs themselves: each job's nodes are up and busy with it
 * (a partition exists for one job and goes when it ends). The first node of a job is its head. Nodes run
 * no Sky Port daemon of their own, so `api_port` is 0.
 */
export function nodeViews(jobs: Job[], flavors: Flavor[]): NodeView[] {
  return jobs.flatMap((job) => {
    const flavor = flavors.find((f) => f.name === job.flavor_id && f.remote === job.remote_id);
    return job.node_names.map((name, i) => ({
      id: name,
      name,
      host: job.node_ips[i] ?? '',
      api_port: 0,
      state_power: 'up' as const,
      state_alloc: 'busy' as const,
      resources: flavor ? flavorResources(flavor) : [],
      roles: [i === 0 ? roles.head : roles.compute],
    }));
  });
}

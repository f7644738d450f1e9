/** A resource group as ARM holds it. */
export interface ResourceGroupRecord {
  id: string;
  name: string;
  location: string;
  tags: Record<string, string>;
  provisioningState: 'Succeeded' | 'Deleting';
}

/** A resource inside a group: its ARM envelope, with `properties` as Azure returns them. */
export interface ArmResource {
  id: string;
  name: string;
  /** `Namespace/type`, e.g. `Microsoft.Network/networkSecurityGroups`. */
  type: string;
  resourceGroup: string;
  location: string;
  tags: Record<string, string>;
  properties: Record<string, any>;
  sku?: Record<string, unknown>;
  zones?: string[];
  /** What Azure accepts on PUT but never returns on GET (a VM's custom data). */
  writeOnly: { customData?: string };
}

const key = (s: string): string => s.toLowerCase();

/** The fake subscription's contents. ARM compares names and ids without regard to case; so does this. */
export class ResourceStore {
  private readonly groups = new Map<string, ResourceGroupRecord>();
  private readonly resources = new Map<string, ArmResource>();

  constructor(readonly subscriptionId: string) {}

  groupId(name: string): string {
    return `/subscriptions/${this.subscriptionId}/resourceGroups/${name}`;
  }

  resourceId(group: string, type: string, name: string): string {
    return `${this.groupId(group)}/providers/${type}/${name}`;
  }

  group(name: string): ResourceGroupRecord | undefined {
    return this.groups.get(key(name));
  }

  allGroups(): ResourceGroupRecord[] {
    return [...this.groups.values()];
  }

  putGroup(group: ResourceGroupRecord): void {
    this.groups.set(key(group.name), group);
  }

  /** Removes a group and everything in it, as a completed resource group deletion does. */
  removeGroup(name: string): void {
    this.groups.delete(key(name));
    for (const r of this.resourcesIn(name)) this.resources.delete(key(r.id));
  }

  get(id: string): ArmResource | undefined {
    return this.resources.get(key(id));
  }

  put(resource: ArmResource): void {
    this.resources.set(key(resource.id), resource);
  }

  remove(id: string): void {
    this.resources.delete(key(id));
  }

  resourcesIn(group: string, type?: string): ArmResource[] {
    return [...this.resources.values()].filter(
      (r) => key(r.resourceGroup) === key(group) && (type === undefined || key(r.type) === key(type)),
    );
  }

  allResources(): ArmResource[] {
    return [...this.resources.values()];
  }
}

/** The JSON Azure returns for a resource: never the write-only parts. */
export const resourceJson = (r: ArmResource): Record<string, unknown> => ({
  id: r.id,
  name: r.name,
  type: r.type,
  location: r.location,
  tags: { ...r.tags },
  ...(r.sku ? { sku: structuredClone(r.sku) } : {}),
  ...(r.zones ? { zones: [...r.zones] } : {}),
  properties: structuredClone(r.properties),
});

export const groupJson = (g: ResourceGroupRecord): Record<string, unknown> => ({
  id: g.id,
  name: g.name,
  type: 'Microsoft.Resources/resourceGroups',
  location: g.location,
  tags: { ...g.tags },
  properties: { provisioningState: g.provisioningState },
});

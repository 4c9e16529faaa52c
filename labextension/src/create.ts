/** The "Create deployment" dialog. */
import type { Environment, LiveDeployment, Objective, Profiles, ReplicaProfile, ResourceProfile } from './api';
import { el, Form, input, Modal, select } from './dom';
import type { LiveML } from './service';

/** What to do when there is no objective yet (the dialog and the Releases page say it). */
export function noObjectives(): HTMLElement {
  return el(
    'div',
    'jp-LiveML-empty jp-LiveML-noObjectives',
    el('p', '', 'There is no modeling objective yet: a deployment serves a release of one.'),
    el('p', '', 'Make one from a notebook with ', el('code', '', 'lm.submit(objective, model)'),
      ', or in a terminal with ', el('code', '', 'liveml objective create NAME'),
      ', then submit a model and release it.')
  );
}

/** Objectives as select options: NAMESPACE/NAME when they are not all in one namespace. */
export function objectiveOptions(objectives: Objective[]): [string, string][] {
  const spaces = new Set(objectives.map(o => o.namespace));
  return objectives.map(o => [o.rid, spaces.size > 1 ? `${o.namespace}/${o.name}` : o.name]);
}

/** The objective a reference names (RID, NAMESPACE/NAME or name), if any. */
export function findObjective(objectives: Objective[], ref: string): Objective | undefined {
  return objectives.find(o => o.rid === ref || `${o.namespace}/${o.name}` === ref || o.name === ref);
}

/** "default (1–3 replicas)". */
function replicaLabel(p: ReplicaProfile): string {
  const count = p.minReplicas === p.maxReplicas ? `${p.minReplicas}` : `${p.minReplicas}–${p.maxReplicas}`;
  return `${p.name} (${count} replica${p.maxReplicas === 1 ? '' : 's'})`;
}

/** "default (1 vCPU, 2Gi RAM)", with the GPUs when it has some. */
function resourceLabel(p: ResourceProfile): string {
  const gpu = p.gpu ? `, ${p.gpu} GPU${p.gpuType ? ` ${p.gpuType}` : ''}` : '';
  return `${p.name} (${p.cpu} vCPU, ${p.memory} RAM${gpu})`;
}

/** The API name the server derives from a name when none is given. */
export function slug(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63) || 'deployment'
  );
}

const TITLE = 'Create live deployment';

/** The form of the dialog, over loaded objectives and profiles. */
function deploymentForm(objectives: Objective[], profiles: Profiles, objective: string): Form {
  const form = new Form();
  form.node.classList.add('jp-LiveML-create');
  form.route('NoReleaseWithTag', 'environment').route('ApiNameAlreadyExists', 'apiName');
  const chosen = findObjective(objectives, objective) ?? objectives[0];
  form.add('objective', 'Objective', select(objectiveOptions(objectives), chosen.rid));
  const name = form.add('name', 'Name', input('text', '', 'e.g. House prices'));
  form.add('description', 'Description', input('text', '', 'optional'));
  const environments: [Environment, string][] = [
    ['PRODUCTION', 'Production'],
    ['STAGING', 'Staging']
  ];
  form.add('environment', 'Release', select(environments, 'PRODUCTION'),
    'Serves the release with this tag, and upgrades when the tag moves.');
  const pick = <T extends { name: string }>(list: T[]) =>
    list.some(p => p.name === 'default') ? 'default' : (list[0]?.name ?? '');
  form.add('replicaProfile', 'Replica profile',
    select(profiles.replicaProfiles.map(p => [p.name, replicaLabel(p)]), pick(profiles.replicaProfiles)));
  form.add('resourceProfile', 'Resource profile',
    select(profiles.resourceProfiles.map(p => [p.name, resourceLabel(p)]), pick(profiles.resourceProfiles)));
  const apiName = form.add('apiName', 'API name', input('text', '', slug('')),
    'Optional: the endpoint’s name; derived from the name when empty.');
  const derive = () => (apiName.placeholder = slug(name.value));
  name.addEventListener('input', derive);
  derive();
  return form;
}

/** Ask for a new deployment's fields and create it; null when the user cancels. */
export async function createDeployment(
  services: LiveML,
  objective = ''
): Promise<LiveDeployment | null> {
  // first the options, with a spinner (and the error, if they cannot be read)
  const loading = new Modal(TITLE, el('div', 'jp-LiveML-create'), [{ label: 'Cancel' }]);
  let cancelled = false;
  void loading.done.then(() => (cancelled = true));
  const loaded = await loading.notice.run('Loading objectives and profiles…', () =>
    Promise.all([services.objectives.list(), services.profiles.get()])
  );
  if (!loaded || cancelled) {
    return null;  // cancelled, or the error shows in the open dialog until the user closes it
  }
  loading.close(false);
  const [objectives, profiles] = loaded;
  if (objectives.length === 0) {
    await new Modal(TITLE, noObjectives(), [{ label: 'Close' }]).done;
    return null;
  }
  const form = deploymentForm(objectives, profiles, objective);
  let created: LiveDeployment | null = null;
  const create = async () => {
    const apiName = form.value('apiName');
    created = await services.deployments.create({
      objective: form.value('objective'),
      name: form.value('name'),
      description: form.value('description'),
      environment: form.value('environment') as Environment,
      replicaProfile: form.value('replicaProfile'),
      resourceProfile: form.value('resourceProfile'),
      apiName: apiName || null
    });
  };
  const buttons = [{ label: 'Cancel' }, { label: 'Create', kind: 'accept' as const, action: create }];
  const modal = new Modal(TITLE, form.node, buttons, form);
  form.input('name').focus();
  return (await modal.done) ? created : null;
}

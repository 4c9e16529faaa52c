/**
 * The "Runtime configuration" tab of a deployment's page: the replica and resource profiles, and
 * explicit values over them (replicas, vCPU, memory, GPU, threads, queue, environment). Saving
 * sends only what changed; a change that lives in the replica re-rolls with no downtime, and the
 * page switches to the Overview, which shows the rollout.
 */
import { Widget } from '@lumino/widgets';

import type { LiveDeployment, Profiles, RuntimeConfiguration, RuntimeOverrides, UpdateLiveDeployment } from './api';
import type { DeploymentModel } from './deployment';
import { button, el, errorMessage, Form, input, select } from './dom';

type NumberField = 'minReplicas' | 'maxReplicas' | 'cpu' | 'gpu' | 'threadCount' | 'queueSize';

const NUMBERS: [NumberField, string, string, boolean][] = [
  ['minReplicas', 'Min replicas', 'at least this many run (0 to 64)', true],
  ['maxReplicas', 'Max replicas', 'the autoscaler adds replicas up to this (0 to 64)', true],
  ['cpu', 'vCPU per replica', 'e.g. 0.5, 1, 2', false],
  ['gpu', 'GPUs per replica', '0 unless the host has GPUs', true],
  ['threadCount', 'Threads', 'model calls at once per replica', true],
  ['queueSize', 'Queue size', 'requests that may wait per replica before 429', true]
];

/** `KEY=VALUE` lines as an object; throws on a line that is not one. */
export function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      continue;
    }
    const eq = line.indexOf('=');
    const key = eq > 0 ? line.slice(0, eq).trim() : '';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new Error(`line ${index + 1}: write KEY=VALUE (a variable name, =, its value)`);
    }
    env[key] = line.slice(eq + 1);
  }
  return env;
}

function envText(env: Record<string, string> | undefined): string {
  return Object.entries(env ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join('\n');
}

function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every(key => a[key] === b[key]);
}

export class ConfigTab extends Widget {
  private readonly form = new Form();
  private readonly body = el('div', 'jp-LiveML-configBody');
  private profiles: Profiles | null = null;
  private shown: LiveDeployment | null = null;
  private dirty = false;

  constructor(readonly model: DeploymentModel) {
    super();
    this.addClass('jp-LiveML-config');
    this.node.append(
      el(
        'p',
        'jp-LiveML-hint',
        'A profile sets replicas or resources at once; explicit values win over it. ' +
          'Changing vCPU, memory, GPUs, threads, queue or environment starts new replicas one by one ' +
          '(no downtime); changing the replica counts only adds or removes replicas.'
      ),
      this.body,
      this.form.notice.node
    );
    this.body.append(el('p', 'jp-LiveML-loading', 'Loading…'));
    this.form.node.addEventListener('input', () => (this.dirty = true));
    this.form.node.addEventListener('change', () => (this.dirty = true));
    model.changed.connect((_, doc) => void this.fill(doc), this);
    if (model.doc) {
      void this.fill(model.doc);
    }
  }

  /** Fill the form from the deployment, unless the user is editing it. */
  private async fill(doc: LiveDeployment): Promise<void> {
    if (this.dirty && this.shown) {
      return;
    }
    if (!this.profiles) {
      try {
        this.profiles = await this.model.services.profiles.get();
      } catch (error) {
        this.body.replaceChildren(el('p', 'jp-LiveML-notice-error', `The profiles cannot be read: ${errorMessage(error)}`));
        return;
      }
    }
    if (this.dirty && this.shown) {
      return;
    }
    this.shown = doc;
    this.build(doc, this.profiles);
  }

  private build(doc: LiveDeployment, profiles: Profiles): void {
    const form = this.form;
    form.node.replaceChildren();
    const rc = doc.runtimeConfiguration;
    form.add(
      'replicaProfile',
      'Replica profile',
      select(
        profiles.replicaProfiles.map(p => [p.name, `${p.name} (${p.minReplicas}–${p.maxReplicas} replicas)`]),
        doc.replicaProfile
      )
    );
    form.add(
      'resourceProfile',
      'Resource profile',
      select(
        profiles.resourceProfiles.map(p => [
          p.name,
          `${p.name} (${p.cpu} vCPU, ${p.memory}${p.gpu ? `, ${p.gpu} GPU` : ''})`
        ]),
        doc.resourceProfile
      )
    );
    for (const [name, label, hint, integer] of NUMBERS) {
      const field = input('number', String(rc[name] ?? ''));
      field.step = integer ? '1' : 'any';
      field.min = '0';
      form.add(name, label, field, hint);
    }
    form.add('memory', 'Memory per replica', input('text', rc.memory ?? '', 'e.g. 512Mi, 2Gi'), 'a replica over it is replaced');
    const env = el('textarea', 'jp-mod-styled jp-LiveML-input jp-LiveML-env');
    env.rows = 3;
    env.value = envText(rc.env);
    env.placeholder = 'KEY=VALUE, one per line';
    form.add('env', 'Environment', env, 'variables set in every replica');
    const actions = el(
      'div',
      'jp-LiveML-actions',
      button('Save configuration', () => this.save(), 'accept'),
      button('Reset', () => {
        this.dirty = false;
        form.clearErrors();
        this.build(this.model.doc ?? doc, profiles);
      })
    );
    this.body.replaceChildren(form.node, actions);
  }

  /** What the form changes, as an update (null when nothing changed; throws on a bad value). */
  changes(doc: LiveDeployment): UpdateLiveDeployment | null {
    const form = this.form;
    const rc: RuntimeConfiguration = doc.runtimeConfiguration;
    const update: UpdateLiveDeployment = {};
    for (const name of ['replicaProfile', 'resourceProfile'] as const) {
      if (form.value(name) !== doc[name]) {
        update[name] = form.value(name);
      }
    }
    const overrides: RuntimeOverrides = {};
    for (const [name, label, , integer] of NUMBERS) {
      const text = form.value(name);
      if (text === '' && rc[name] === undefined) {
        continue; // the server gave none: leave it to the profile
      }
      const value = Number(text);
      if (text === '' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
        form.fieldError(name, `${label}: enter ${integer ? 'a whole number' : 'a number'}, 0 or more`);
        throw new Error(`${label} is not valid`);
      }
      if (value !== rc[name]) {
        overrides[name] = value;
      }
    }
    if (form.value('memory') !== (rc.memory ?? '')) {
      overrides.memory = form.value('memory');
    }
    let env: Record<string, string>;
    try {
      env = parseEnv(form.input('env').value);
    } catch (error) {
      form.fieldError('env', errorMessage(error));
      throw error;
    }
    if (!sameEnv(env, rc.env ?? {})) {
      overrides.env = env;
    }
    if (Object.keys(overrides).length) {
      update.runtimeConfiguration = overrides;
    }
    return Object.keys(update).length ? update : null;
  }

  private async save(): Promise<void> {
    const doc = this.model.doc;
    if (!doc) {
      return;
    }
    const form = this.form;
    form.clearErrors();
    let update: UpdateLiveDeployment | null;
    try {
      update = this.changes(doc);
    } catch {
      form.notice.show('error', 'Correct the marked field, then save again.');
      return;
    }
    if (!update) {
      form.notice.show('info', 'Nothing changed.');
      return;
    }
    form.notice.show('busy', 'Saving…');
    let saved: LiveDeployment;
    try {
      saved = await this.model.services.deployments.update(doc.rid, update);
    } catch (error) {
      form.showError(error);
      return;
    }
    this.dirty = false;
    this.shown = null;
    const rc = saved.runtimeConfiguration;
    form.notice.show(
      'ok',
      saved.generation !== doc.generation
        ? `Saved: rolling out generation ${saved.generation}; new replicas replace the old ones one by one.`
        : `Saved: ${rc.minReplicas}–${rc.maxReplicas} replicas.`
    );
    this.model.update(saved);
    this.model.showTab('Overview');
  }
}

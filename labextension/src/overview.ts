/**
 * The "Overview" tab of a deployment's page: state and health, replicas, rollout, the release
 * served and the target, recent events, the API name (with an edit), Disable/Enable/Delete.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import type { DeploymentEvent, LiveDeployment } from './api';
import type { DeploymentModel } from './deployment';
import { ago, attrs, badge, button, confirm, el, errorMessage, formatTime, input, Notice, table, tagLabel } from './dom';

/** The absolute URL of a deployment's v1 inference endpoint, as a client outside Lab calls it. */
export function endpointUrl(rid: string, v2 = false): string {
  const base = new URL(ServerConnection.makeSettings().baseUrl, window.location.href).href;
  const url = `${base.replace(/\/$/, '')}/foundry-ml-live/api/inference/transform/${rid}`;
  return v2 ? `${url}/v2` : url;
}

/** "2 of 3 replicas on 1.1" with a bar, while a rollout is under way. */
function rolloutNode(doc: LiveDeployment): HTMLElement | null {
  const rollout = doc.status.rollout;
  if (!rollout) {
    return null;
  }
  const done = rollout.desiredReplicas ? rollout.updatedReplicas / rollout.desiredReplicas : 1;
  const bar = el('progress', 'jp-LiveML-progress');
  bar.max = 1;
  bar.value = Math.min(1, done);
  const text =
    rollout.state === 'COMPLETE'
      ? `Rollout of ${rollout.releaseVersion} (generation ${rollout.generation}) complete`
      : rollout.state === 'FAILED'
        ? `Rollout of ${rollout.releaseVersion} failed${rollout.reason ? `: ${rollout.reason}` : ''}`
        : `Rolling out ${rollout.releaseVersion} (generation ${rollout.generation}): ` +
          `${rollout.updatedReplicas} of ${rollout.desiredReplicas} replicas updated`;
  const node = el('div', `jp-LiveML-rollout jp-mod-${rollout.state.toLowerCase()}`, badge(rollout.state), el('span', '', text));
  if (rollout.state === 'PROGRESSING') {
    node.append(bar);
  }
  return attrs(node, { 'aria-label': 'Rollout' });
}

/** A definition list from label/value pairs (values may be nodes). */
function facts(pairs: [string, Node | string][]): HTMLElement {
  const list = el('dl', 'jp-LiveML-facts');
  for (const [label, value] of pairs) {
    list.append(el('dt', '', label), el('dd', '', value));
  }
  return list;
}

export class OverviewTab extends Widget {
  private readonly summary = el('div', 'jp-LiveML-summary');
  private readonly rollout = el('div', 'jp-LiveML-rolloutBox');
  private readonly details = el('div', 'jp-LiveML-detailsBox');
  private readonly replicas = el('div', 'jp-LiveML-replicas');
  private readonly events = el('div', 'jp-LiveML-events');
  private readonly actions = el('div', 'jp-LiveML-actions');
  private readonly notice = new Notice();
  private editing = false;
  private eventsRead = 0;

  constructor(readonly model: DeploymentModel) {
    super();
    this.addClass('jp-LiveML-overview');
    this.node.append(
      this.summary,
      this.rollout,
      this.actions,
      this.notice.node,
      this.details,
      el('h3', 'jp-LiveML-sectionTitle', 'Replicas'),
      this.replicas,
      el('h3', 'jp-LiveML-sectionTitle', 'Recent events'),
      this.events
    );
    this.summary.append(el('p', 'jp-LiveML-loading', 'Loading…'));
    model.changed.connect((_, doc) => this.render(doc), this);
    model.deleted.connect(() => this.actions.replaceChildren(), this);
    if (model.doc) {
      this.render(model.doc);
    }
  }

  private render(doc: LiveDeployment): void {
    const status = doc.status;
    const ready = `${status.readyReplicas ?? 0}/${status.desiredReplicas ?? 0} ready`;
    this.summary.replaceChildren(
      el(
        'div',
        'jp-LiveML-title',
        el('h2', 'jp-LiveML-name', doc.name),
        attrs(badge(status.state, `${status.state} ${ready}`), { 'aria-label': 'State' }),
        el('span', 'jp-LiveML-health', status.isReady ? 'answering queries' : 'not answering queries')
      ),
      doc.description ? el('p', 'jp-LiveML-description', doc.description) : '',
      status.state !== 'ACTIVE' && status.reason ? el('p', 'jp-LiveML-reason', status.reason) : ''
    );
    this.rollout.replaceChildren(rolloutNode(doc) ?? '');
    const served = doc.release ? doc.release.version : 'none yet';
    const target =
      doc.targetRelease && doc.targetRelease.version !== doc.release?.version
        ? `${doc.targetRelease.version} (upgrading)`
        : (doc.targetRelease?.version ?? 'no release holds the tag');
    if (!this.editing) {
      this.details.replaceChildren(
        facts([
          ['API name', this.apiName(doc)],
          ['Follows', `${tagLabel(doc.environment)} of its objective`],
          ['Release served', served],
          ['Target release', target],
          ['Profiles', `replicas: ${doc.replicaProfile}, resources: ${doc.resourceProfile}`],
          ['Endpoint (v1)', el('code', 'jp-LiveML-endpoint', endpointUrl(doc.rid))],
          ['RID', el('code', '', doc.rid)],
          ['Namespace', doc.namespace],
          ['Created', `${formatTime(doc.createdAt)} by ${doc.createdBy}`],
          ['Updated', formatTime(doc.updatedAt)]
        ])
      );
    }
    this.replicas.replaceChildren(
      (status.replicas ?? []).length
        ? table(
            (status.replicas ?? []).map(r => ({
              'node id': r.nodeId,
              state: r.state,
              health: r.health,
              release: r.releaseVersion,
              restarts: r.restarts ?? 0,
              reason: r.reason ?? ''
            })),
            [],
            'Replicas',
            (column, value) => (column === 'state' ? badge(String(value)) : String(value ?? ''))
          )
        : el('p', 'jp-LiveML-empty', doc.enabled ? 'No replica runs yet.' : 'Disabled: no replica runs.')
    );
    this.renderActions(doc);
    void this.readEvents();
  }

  /** The API name, with a pencil that turns it into an input with Save and Cancel. */
  private apiName(doc: LiveDeployment): HTMLElement {
    const box = el('span', 'jp-LiveML-apiNameBox', el('code', 'jp-LiveML-apiName', doc.apiName));
    const edit = button('✎', () => {
      this.editing = true;
      const field = attrs(input('text', doc.apiName), { 'aria-label': 'API name' });
      const save = async (): Promise<void> => {
        const changed = await this.notice.run(
          'Saving the API name…',
          () => this.model.services.deployments.setApiName(doc.rid, field.value.trim()),
          `API name saved: queries may use ${field.value.trim()}`
        );
        if (changed) {
          this.editing = false;
          this.model.update(changed);
        }
      };
      field.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          void save();
        } else if (event.key === 'Escape') {
          this.editing = false;
          this.render(this.model.doc ?? doc);
        }
      });
      box.replaceChildren(
        field,
        button('Save', save, 'accept'),
        button('Cancel', () => {
          this.editing = false;
          this.notice.clear();
          this.render(this.model.doc ?? doc);
        })
      );
      field.focus();
    }, '', 'Edit the API name');
    attrs(edit, { 'aria-label': 'Edit API name' });
    box.append(edit);
    return box;
  }

  private renderActions(doc: LiveDeployment): void {
    const deployments = this.model.services.deployments;
    const act = async (busy: string, action: () => Promise<LiveDeployment>, done: string) => {
      const changed = await this.notice.run(busy, action, done);
      if (changed) {
        this.model.update(changed);
      }
    };
    const toggle = doc.enabled
      ? button('Disable', () =>
          confirm(
            `Disable ${doc.name}?`,
            `Its replicas stop and it answers no queries until enabled again. It keeps its RID (${doc.rid}) and API name.`,
            'Disable',
            async () => {
              this.model.update(await deployments.disable(doc.rid)); // an error keeps the dialog open
              this.notice.show('ok', 'Disabled: the RID and API name are kept.');
            }
          ), 'warn')
      : button('Enable', () => act('Enabling…', () => deployments.enable(doc.rid), 'Enabled: replicas are starting.'), 'accept');
    const remove = button('Delete', () =>
      confirm(
        `Delete ${doc.name}?`,
        el(
          'div',
          '',
          el('p', '', 'This cannot be undone. Its replicas stop, and this RID answers 404 for good:'),
          el('p', '', el('code', '', doc.rid)),
          el('p', '', `The API name ${doc.apiName} becomes free.`)
        ),
        'Delete',
        async () => {
          await deployments.delete(doc.rid);
          this.model.markDeleted();
        },
        'warn'
      ), 'warn');
    this.actions.replaceChildren(
      toggle,
      remove,
      button('Refresh', () => this.model.refresh().catch(error => this.notice.show('error', errorMessage(error))))
    );
  }

  /** The newest events (at most every 5 s: a page re-renders on every poll). */
  private async readEvents(): Promise<void> {
    if (Date.now() - this.eventsRead < 5000 || this.model.gone) {
      return;
    }
    this.eventsRead = Date.now();
    let events: DeploymentEvent[];
    try {
      events = await this.model.services.events.list(this.model.rid, 12);
    } catch (error) {
      this.events.replaceChildren(el('p', 'jp-LiveML-notice-error', errorMessage(error)));
      return;
    }
    this.events.replaceChildren(
      events.length
        ? table(
            events.map(e => ({ when: ago(e.at), kind: e.kind, message: e.message })),
            [],
            'Recent events'
          )
        : el('p', 'jp-LiveML-empty', 'No events yet.')
    );
  }
}

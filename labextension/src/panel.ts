import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import type { LiveDeployment } from './api';
import { attrs, badge, button, el, tagLabel } from './dom';
import { LiveMLError } from './handler';
import { LiveML } from './service';

/** How often the list refreshes, and how far it backs off while requests fail (ms). */
const INTERVAL = 3000;
const MAX_INTERVAL = 60000;

/** What to tell the user when the list cannot be read, and what to do about it. */
export function unreachable(error: unknown): { title: string; hint: string } {
  if (error instanceof ServerConnection.NetworkError) {
    return {
      title: 'The Jupyter server cannot be reached.',
      hint: 'Check that jupyter lab is still running (its terminal shows why it stopped); this panel retries by itself.'
    };
  }
  if (error instanceof LiveMLError && !error.isEnvelope) {
    return {
      title: `The liveml control plane is not running in this Jupyter server (${error.message}).`,
      hint: 'Enable it with `jupyter server extension enable liveml_ext` (or reinstall liveml) and restart jupyter lab.'
    };
  }
  if (error instanceof LiveMLError) {
    return {
      title: `The liveml control plane answered ${error.errorName}: ${error.message}`,
      hint: 'This panel retries by itself; the Jupyter server log has the details.'
    };
  }
  return {
    title: `The deployments could not be read: ${String(error)}`,
    hint: 'This panel retries by itself.'
  };
}

/** What the sidebar's buttons and rows do (commands of the plugin). */
export interface PanelActions {
  open(rid: string): void;
  create(): void;
  releases(): void;
}

/** True when the deployment matches every word of the filter (name, API name, tag, state...). */
export function matches(dep: LiveDeployment, filter: string): boolean {
  const text = [
    dep.name,
    dep.apiName,
    dep.namespace,
    dep.description,
    tagLabel(dep.environment),
    dep.status.state,
    dep.release?.version ?? ''
  ]
    .join(' ')
    .toLowerCase();
  return filter
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every(word => text.includes(word));
}

/**
 * The left sidebar "Live deployments": every deployment with its state, polled with back-off
 * while shown; a filter box; Create and Releases buttons; a row opens the deployment's page.
 */
export class DeploymentsPanel extends Widget {
  readonly poll: Poll;
  private readonly body: HTMLElement;
  private readonly problem: HTMLElement;
  private readonly filter: HTMLInputElement;
  private readonly count: HTMLElement;
  private deployments: LiveDeployment[] | null = null;

  constructor(
    private readonly services = new LiveML(),
    private readonly actions: PanelActions | null = null
  ) {
    super();
    this.addClass('jp-LiveML-deployments');
    const header = el('h2', 'jp-LiveML-header', 'Live deployments');
    const tools = el('div', 'jp-LiveML-toolbar');
    if (actions) {
      tools.append(
        button('+ New', () => actions.create(), 'accept', 'Create a live deployment'),
        button('Releases', () => actions.releases(), '', 'Release history: release to Staging, mark as Production')
      );
    }
    tools.append(attrs(button('⟳', () => this.poll.refresh(), '', 'Refresh now'), { 'aria-label': 'Refresh now' }));
    this.filter = el('input', 'jp-mod-styled jp-LiveML-filter');
    this.filter.type = 'search';
    this.filter.placeholder = 'Filter by name, API name, tag, state';
    this.filter.setAttribute('aria-label', 'Filter deployments');
    this.filter.addEventListener('input', () => this.render());
    this.count = el('div', 'jp-LiveML-count');
    this.problem = el('div', 'jp-LiveML-problem');
    this.problem.setAttribute('role', 'alert');
    this.problem.hidden = true;
    this.body = el('ul', 'jp-LiveML-list');
    this.body.setAttribute('aria-label', 'Live deployments');
    this.node.append(header, tools, this.filter, this.problem, this.body, this.count);
    this.poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: INTERVAL, backoff: true, max: MAX_INTERVAL },
      standby: () => !this.isVisible || document.visibilityState === 'hidden',
      name: 'liveml:deployments'
    });
  }

  /** Read the deployments and show them; a failure is shown, then rethrown so the poll backs off. */
  async refresh(): Promise<void> {
    let deployments: LiveDeployment[];
    try {
      deployments = await this.services.deployments.list();
    } catch (error) {
      const { title, hint } = unreachable(error);
      this.problem.replaceChildren(
        el('p', 'jp-LiveML-problemTitle', title),
        el('p', 'jp-LiveML-problemHint', hint)
      );
      this.problem.hidden = false;
      throw error;
    }
    this.problem.hidden = true;
    this.deployments = deployments;
    this.render();
  }

  /** Something changed elsewhere (a page's action): read the list again soon. */
  changed(): void {
    if (this.isVisible) {
      void this.poll.schedule({ interval: 300, phase: 'refreshed' });
    }
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  private render(): void {
    const deployments = this.deployments;
    if (deployments === null) {
      return;
    }
    if (deployments.length === 0) {
      this.count.textContent = '';
      this.body.replaceChildren(
        el(
          'li',
          'jp-LiveML-empty',
          this.actions
            ? 'No live deployments yet. "+ New" deploys a release; so do `liveml deploy OBJECTIVE` and `%liveml panel`.'
            : 'No live deployments yet. Deploy a release with `liveml deploy OBJECTIVE` or `%liveml panel`.'
        )
      );
      return;
    }
    const filter = this.filter.value.trim();
    const shown = [...deployments]
      .filter(dep => matches(dep, filter))
      .sort((a, b) => a.name.localeCompare(b.name));
    this.count.textContent = filter
      ? `${shown.length} of ${deployments.length} deployments match "${filter}"`
      : `${deployments.length} deployment${deployments.length === 1 ? '' : 's'}`;
    this.body.replaceChildren(...shown.map(dep => this.row(dep)));
  }

  private row(dep: LiveDeployment): HTMLElement {
    const status = dep.status;
    const row = el('li', 'jp-LiveML-row');
    row.dataset.rid = dep.rid;
    row.dataset.state = status.state;
    row.setAttribute('aria-label', dep.name);
    const ready = `${status.readyReplicas ?? 0}/${status.desiredReplicas ?? 0}`;
    const state = badge(status.state, `${status.state} ${ready}`);
    state.title = `${status.readyReplicas ?? 0} of ${status.desiredReplicas ?? 0} replicas ready`;
    const head = el('div', 'jp-LiveML-rowHead', el('span', 'jp-LiveML-name', dep.name), state);
    const served = dep.release ? `release ${dep.release.version}` : 'no release served';
    const target =
      dep.targetRelease && dep.targetRelease.version !== dep.release?.version
        ? ` → ${dep.targetRelease.version}`
        : '';
    const details = el(
      'div',
      'jp-LiveML-details',
      el('code', 'jp-LiveML-apiName', dep.apiName),
      el('span', 'jp-LiveML-env', tagLabel(dep.environment)),
      el('span', 'jp-LiveML-release', served + target)
    );
    row.append(head, details);
    const reason =
      status.reason ||
      (status.state === 'DISABLED'
        ? `Disabled: no replicas run. \`liveml enable ${dep.apiName}\` starts them.`
        : '');
    if (status.state !== 'ACTIVE' && reason) {
      row.append(el('div', 'jp-LiveML-reason', reason));
    }
    if (this.actions) {
      const actions = this.actions;
      row.classList.add('jp-mod-clickable');
      row.tabIndex = 0;
      row.title = `Open ${dep.name}: overview, configuration, query, logs and metrics`;
      row.addEventListener('click', () => actions.open(dep.rid));
      row.addEventListener('keydown', event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          actions.open(dep.rid);
        }
      });
    }
    return row;
  }
}

import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import type { LiveDeployment } from './api';
import { LiveMLError } from './handler';
import { DeploymentsService } from './service';

/** How often the list refreshes, and how far it backs off while requests fail (ms). */
const INTERVAL = 3000;
const MAX_INTERVAL = 60000;

const ENVIRONMENTS: Record<string, string> = { STAGING: 'Staging', PRODUCTION: 'Production' };

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

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

/** The left sidebar "Live deployments": every deployment with its state, polled while shown. */
export class DeploymentsPanel extends Widget {
  readonly poll: Poll;
  private readonly body: HTMLElement;
  private readonly problem: HTMLElement;

  constructor(private readonly service = new DeploymentsService()) {
    super();
    this.addClass('jp-LiveML-deployments');
    this.node.appendChild(element('h2', 'jp-LiveML-header', 'Live deployments'));
    this.problem = element('div', 'jp-LiveML-problem');
    this.problem.setAttribute('role', 'alert');
    this.problem.hidden = true;
    this.body = element('ul', 'jp-LiveML-list');
    this.body.setAttribute('aria-label', 'Live deployments');
    this.node.append(this.problem, this.body);
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
      deployments = await this.service.list();
    } catch (error) {
      const { title, hint } = unreachable(error);
      this.problem.replaceChildren(
        element('p', 'jp-LiveML-problemTitle', title),
        element('p', 'jp-LiveML-problemHint', hint)
      );
      this.problem.hidden = false;
      throw error;
    }
    this.problem.hidden = true;
    this.render(deployments);
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  private render(deployments: LiveDeployment[]): void {
    if (deployments.length === 0) {
      const empty = element(
        'li',
        'jp-LiveML-empty',
        'No live deployments yet. Deploy a release with `liveml deploy OBJECTIVE` or `%liveml panel`.'
      );
      this.body.replaceChildren(empty);
      return;
    }
    const sorted = [...deployments].sort((a, b) => a.name.localeCompare(b.name));
    this.body.replaceChildren(...sorted.map(dep => this.row(dep)));
  }

  private row(dep: LiveDeployment): HTMLElement {
    const status = dep.status;
    const row = element('li', 'jp-LiveML-row');
    row.dataset.rid = dep.rid;
    row.dataset.state = status.state;
    row.setAttribute('aria-label', dep.name);

    const head = element('div', 'jp-LiveML-rowHead');
    head.append(element('span', 'jp-LiveML-name', dep.name));
    const badge = element(
      'span',
      `jp-LiveML-badge jp-LiveML-badge-${status.state.toLowerCase()}`,
      `${status.state} ${status.readyReplicas ?? 0}/${status.desiredReplicas ?? 0}`
    );
    badge.title = `${status.readyReplicas ?? 0} of ${status.desiredReplicas ?? 0} replicas ready`;
    head.append(badge);

    const details = element('div', 'jp-LiveML-details');
    details.append(
      element('code', 'jp-LiveML-apiName', dep.apiName),
      element('span', 'jp-LiveML-env', ENVIRONMENTS[dep.environment] ?? dep.environment),
      element(
        'span',
        'jp-LiveML-release',
        dep.release ? `release ${dep.release.version}` : 'no release served'
      )
    );
    row.append(head, details);
    const reason =
      status.reason ||
      (status.state === 'DISABLED'
        ? `Disabled: no replicas run. \`liveml enable ${dep.apiName}\` starts them.`
        : '');
    if (status.state !== 'ACTIVE' && reason) {
      row.append(element('div', 'jp-LiveML-reason', reason));
    }
    return row;
  }
}

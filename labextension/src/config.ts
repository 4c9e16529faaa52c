/** The "Runtime configuration" tab of a deployment's page. */
import { Widget } from '@lumino/widgets';

import type { DeploymentModel } from './deployment';
import { el } from './dom';

export class ConfigTab extends Widget {
  constructor(readonly model: DeploymentModel) {
    super();
    this.node.append(el('p', '', 'Coming soon.'));
  }
}

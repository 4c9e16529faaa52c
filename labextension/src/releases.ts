/** The "Releases" page of a modeling objective. */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el } from './dom';
import type { LiveML } from './service';

export class ReleasesView extends Widget {
  constructor(
    readonly services: LiveML,
    readonly objective = ''
  ) {
    super();
    this.node.append(el('p', '', 'Coming soon.'));
  }
}

/** One page per objective (restored on reload by the objective's RID or name). */
export class ReleasesPage extends MainAreaWidget<ReleasesView> {
  constructor(services: LiveML, objective = '') {
    super({ content: new ReleasesView(services, objective) });
    this.id = `liveml-releases-${objective || 'all'}`;
    this.title.label = 'Model releases';
    this.title.closable = true;
  }

  get objective(): string {
    return this.content.objective;
  }
}

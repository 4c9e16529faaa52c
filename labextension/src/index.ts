import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { DeploymentsPanel } from './panel';

export { LiveMLError, requestAPI } from './handler';
export { DeploymentsService } from './service';
export * from './api';

/** A pulse in a rounded box: a live endpoint. */
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v14h16V5z"/>
    <path d="M5 13h3l2-5 3 9 2-5 1 1h3v2h-4l-.5-.5L13 21l-3-9-1 2H5z"/>
  </g>
</svg>`;

export const liveIcon = new LabIcon({ name: 'liveml:deployments', svgstr: ICON_SVG });

const COMMAND = 'liveml:open-deployments';
const PANEL_ID = 'liveml-deployments';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'liveml-labextension:deployments',
  description: 'The Live deployments sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const panel = new DeploymentsPanel();
    panel.id = PANEL_ID;
    panel.title.icon = liveIcon;
    panel.title.caption = 'Live deployments';
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }
    app.commands.addCommand(COMMAND, {
      label: 'Live deployments: open panel',
      caption: 'Show the live deployments in the left sidebar',
      icon: liveIcon,
      execute: () => app.shell.activateById(PANEL_ID)
    });
    if (palette) {
      palette.addItem({ command: COMMAND, category: 'liveml' });
    }
  }
};

export default plugin;

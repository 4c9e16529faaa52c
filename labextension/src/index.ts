import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';

import { createDeployment } from './create';
import { DeploymentPage } from './deployment';
import { errorMessage } from './dom';
import { DeploymentsPanel } from './panel';
import { ReleasesPage } from './releases';
import { LiveML } from './service';

export { LiveMLError, request, requestAPI, requestInference } from './handler';
export * from './service';
export * from './api';

/** A pulse in a rounded box: a live endpoint. */
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v14h16V5z"/>
    <path d="M5 13h3l2-5 3 9 2-5 1 1h3v2h-4l-.5-.5L13 21l-3-9-1 2H5z"/>
  </g>
</svg>`;

export const liveIcon = new LabIcon({ name: 'liveml:deployments', svgstr: ICON_SVG });

/** The commands of the extension (palette category "liveml"). */
export const CommandIDs = {
  openPanel: 'liveml:open-deployments',
  create: 'liveml:create-deployment',
  open: 'liveml:open-deployment',
  releases: 'liveml:open-releases'
} as const;

const PANEL_ID = 'liveml-deployments';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'liveml-labextension:deployments',
  description: 'Live deployments in JupyterLab: the sidebar, deployment pages and releases.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    launcher: ILauncher | null
  ) => {
    const services = new LiveML();
    const { commands, shell } = app;
    const pages = new WidgetTracker<DeploymentPage>({ namespace: 'liveml-deployment' });
    const releasePages = new WidgetTracker<ReleasesPage>({ namespace: 'liveml-releases' });

    const panel = new DeploymentsPanel(services, {
      open: rid => void commands.execute(CommandIDs.open, { rid }),
      create: () => void commands.execute(CommandIDs.create),
      releases: () => void commands.execute(CommandIDs.releases)
    });
    panel.id = PANEL_ID;
    panel.title.icon = liveIcon;
    panel.title.caption = 'Live deployments';
    shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    /** Open (or bring forward) the page of a deployment, by RID. */
    const openPage = (rid: string): DeploymentPage => {
      const open = pages.find(page => page.rid === rid);
      if (open) {
        shell.activateById(open.id);
        return open;
      }
      const page = new DeploymentPage(rid, services);
      page.title.icon = liveIcon;
      page.content.model.deleted.connect(() => void panel.poll.refresh());
      // the page polls its deployment; the sidebar reads the list again only when a row would change
      let shown = '';
      page.content.model.changed.connect((_, doc) => {
        const { status } = doc;
        const row = JSON.stringify([doc.name, doc.apiName, doc.enabled, status.state, status.reason,
          status.readyReplicas, status.desiredReplicas, doc.release?.version, doc.targetRelease?.version]);
        if (row !== shown) {
          shown = row;
          panel.changed();
        }
      });
      void pages.add(page);
      shell.add(page, 'main');
      shell.activateById(page.id);
      return page;
    };

    commands.addCommand(CommandIDs.openPanel, {
      label: 'Live deployments: open panel',
      caption: 'Show the live deployments in the left sidebar',
      icon: liveIcon,
      execute: () => shell.activateById(PANEL_ID)
    });

    commands.addCommand(CommandIDs.create, {
      label: args => (args.isLauncher ? 'New live deployment' : 'Live deployments: create deployment'),
      caption: 'Deploy the latest Staging or Production release of an objective behind a REST endpoint',
      icon: liveIcon,
      execute: async args => {
        const created = await createDeployment(services, String(args.objective ?? ''));
        if (created) {
          void panel.poll.refresh();
          openPage(created.rid);
        }
        return created;
      }
    });

    commands.addCommand(CommandIDs.open, {
      label: args => (args.rid ? 'Open live deployment' : 'Live deployments: open deployment by name'),
      caption: "Open a deployment's page: overview, configuration, query, logs and metrics",
      icon: liveIcon,
      execute: async args => {
        if (args.rid) {
          return openPage(String(args.rid));
        }
        let deployments;
        try {
          deployments = await services.deployments.list();
        } catch (error) {
          await showErrorMessage('Live deployments', errorMessage(error));
          return;
        }
        if (deployments.length === 0) {
          void commands.execute(CommandIDs.openPanel);
          return;
        }
        const names = deployments.map(d => `${d.name} (${d.apiName})`).sort();
        const answer = await InputDialog.getItem({
          title: 'Open live deployment',
          label: 'Deployment',
          items: names
        });
        const chosen = answer.button.accept
          ? deployments.find(d => `${d.name} (${d.apiName})` === answer.value)
          : undefined;
        return chosen ? openPage(chosen.rid) : undefined;
      }
    });

    commands.addCommand(CommandIDs.releases, {
      label: args => (args.isLauncher ? 'Model releases' : 'Live deployments: model releases'),
      caption: 'Release history per objective: release to Staging, mark as Production',
      icon: liveIcon,
      execute: args => {
        const objective = String(args.objective ?? '');
        const open = releasePages.find(page => page.objective === objective);
        if (open) {
          shell.activateById(open.id);
          return open;
        }
        const page = new ReleasesPage(services, objective, app.commands);
        page.title.icon = liveIcon;
        void releasePages.add(page);
        shell.add(page, 'main');
        shell.activateById(page.id);
        return page;
      }
    });

    if (restorer) {
      void restorer.restore(pages, {
        command: CommandIDs.open,
        args: page => ({ rid: page.rid }),
        name: page => page.rid
      });
      void restorer.restore(releasePages, {
        command: CommandIDs.releases,
        args: page => ({ objective: page.objective }),
        name: page => page.objective || 'all'
      });
    }
    if (palette) {
      for (const command of [CommandIDs.openPanel, CommandIDs.create, CommandIDs.open, CommandIDs.releases]) {
        palette.addItem({ command, category: 'liveml' });
      }
    }
    if (launcher) {
      launcher.add({ command: CommandIDs.create, args: { isLauncher: true }, category: 'Live deployments', rank: 1 });
      launcher.add({ command: CommandIDs.releases, args: { isLauncher: true }, category: 'Live deployments', rank: 2 });
    }
  }
};

export default plugin;

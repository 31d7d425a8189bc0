/**
 * mlmagics for JupyterLab: the Deployments side panel and its commands.
 *
 *   mlmagics: Show deployments     open the panel
 *   mlmagics: Refresh deployments  open it and load now
 *   mlmagics: Open deploy form     insert and run `%deploy_form` below the active notebook cell
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { DeploymentsAPI } from './api';
import { DeploymentsPanel } from './panel';

namespace CommandIDs {
  export const show = 'mlmagics:show-deployments';
  export const refresh = 'mlmagics:refresh-deployments';
  export const deployForm = 'mlmagics:open-deploy-form';
}

const PANEL_ID = 'mlmagics-deployments';
const CATEGORY = 'mlmagics';

export const deploymentsIcon = new LabIcon({
  name: 'mlmagics:deployments',
  svgstr: `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 4h16v5H4zm2 1.5v2h2v-2zM4 10.5h16v5H4zm2 1.5v2h2v-2zM4 17h16v5H4zm2 1.5v2h2v-2z"/>
  </g>
</svg>`
});

/** The cell the deploy-form command runs: loads the magics first unless the notebook already does. */
function deployFormSource(notebook: NotebookPanel): string {
  const cells = notebook.content.model?.sharedModel.cells ?? [];
  const loaded = cells.some(cell =>
    /%(re)?load_ext\s+mlmagics\b/.test(cell.getSource())
  );
  return loaded ? '%deploy_form' : '%load_ext mlmagics\n%deploy_form';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlmagics:deployments',
  description:
    'The mlmagics Deployments panel: models, images and services with live state, test, logs and delete.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null
  ) => {
    const panel = new DeploymentsPanel(
      new DeploymentsAPI(app.serviceManager.serverSettings)
    );
    panel.id = PANEL_ID;
    panel.title.icon = deploymentsIcon;
    panel.title.caption = 'Deployments (mlmagics)';
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(CommandIDs.show, {
      label: 'mlmagics: Show deployments',
      icon: deploymentsIcon,
      execute: () => app.shell.activateById(PANEL_ID)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'mlmagics: Refresh deployments',
      execute: () => {
        app.shell.activateById(PANEL_ID);
        return panel.model.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.deployForm, {
      label: 'mlmagics: Open deploy form',
      caption:
        'Insert %deploy_form below the active cell of the current notebook and run it',
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async () => {
        const notebook = notebooks?.currentWidget;
        if (!notebook) {
          return;
        }
        const active = notebook.content.activeCell;
        if (
          !active ||
          active.model.type !== 'code' ||
          active.model.sharedModel.getSource().trim()
        ) {
          NotebookActions.insertBelow(notebook.content); // an empty code cell is used as it is
        }
        notebook.content.activeCell?.model.sharedModel.setSource(
          deployFormSource(notebook)
        );
        await NotebookActions.run(notebook.content, notebook.sessionContext);
      }
    });
    for (const command of [
      CommandIDs.show,
      CommandIDs.refresh,
      CommandIDs.deployForm
    ]) {
      palette?.addItem({ command, category: CATEGORY });
    }
  }
};

export default plugin;

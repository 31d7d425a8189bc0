/**
 * The Deployments side panel: Models, Images and Services of the server's mlmagics workspace,
 * with live state; a service opens into its detail, from where it is tested or deleted.
 */
import {
  Clipboard,
  Dialog,
  ReactWidget,
  showDialog
} from '@jupyterlab/apputils';
import {
  refreshIcon,
  ToolbarButtonComponent,
  UseSignal
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { DeploymentsAPI } from './api';
import {
  ImageRow,
  ModelRow,
  NoticeLine,
  Section,
  ServiceDetail,
  ServiceRow
} from './components';
import { DeploymentsModel } from './model';
import { openTestDialog } from './testDialog';

type Kind = 'services' | 'images' | 'models';

const WHAT_STAYS: Record<Kind, string> = {
  services: 'The service stops and its port is freed; its image stays.',
  images: 'The image is removed; its models stay.',
  models: 'This model version is removed from the workspace.'
};

export class DeploymentsPanel extends ReactWidget {
  constructor(api: DeploymentsAPI) {
    super();
    this.addClass('jp-mlmagics-panel');
    this.model = new DeploymentsModel(api, () => this.isVisible);
  }

  readonly model: DeploymentsModel;

  /** Ask for confirmation, delete, and say what happened (the core's refusal, word for word). */
  async remove(kind: Kind, id: string): Promise<void> {
    const noun = kind.slice(0, -1);
    const result = await showDialog({
      title: `Delete ${noun} ${id}?`,
      body: WHAT_STAYS[kind],
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      const message = await this.model.api.remove(kind, id);
      if (kind === 'services') {
        this.model.select(null);
      }
      this.model.notify({ kind: 'info', text: message });
    } catch (error) {
      this.model.notify({ kind: 'error', text: (error as Error).message });
    }
    await this.model.refresh();
  }

  async copyKey(
    service: string,
    which: 'primary' | 'secondary'
  ): Promise<void> {
    try {
      const keys = await this.model.api.keys(service);
      Clipboard.copyToSystem(keys[which]);
      this.model.notify({
        kind: 'info',
        text: `Copied the ${which} key of ${service}`
      });
    } catch (error) {
      this.model.notify({ kind: 'error', text: (error as Error).message });
    }
  }

  dispose(): void {
    this.model.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.model.refresh();
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => this._renderContent()}
      </UseSignal>
    );
  }

  private _renderContent(): JSX.Element {
    const { data, notice, selected, logs } = this.model;
    return (
      <>
        <div className="jp-mlmagics-header">
          <span className="jp-mlmagics-title">Deployments</span>
          <ToolbarButtonComponent
            icon={refreshIcon}
            tooltip="Refresh deployments"
            onClick={() => void this.model.refresh()}
          />
        </div>
        {data ? (
          <div
            className="jp-mlmagics-muted jp-mlmagics-workspace"
            title={data.workspace}
          >
            {data.workspace}
          </div>
        ) : null}
        <NoticeLine notice={notice} onDismiss={() => this.model.notify(null)} />
        {data === null ? (
          notice ? null : (
            <div className="jp-mlmagics-empty">Loading…</div>
          )
        ) : (
          <div className="jp-mlmagics-sections">
            <Section
              title="Models"
              count={data.models.length}
              empty="No registered models."
            >
              {data.models.map(model => (
                <ModelRow
                  key={model.id}
                  model={model}
                  onDelete={() => void this.remove('models', model.id)}
                />
              ))}
            </Section>
            <Section
              title="Images"
              count={data.images.length}
              empty="No images."
            >
              {data.images.map(image => (
                <ImageRow
                  key={image.id}
                  image={image}
                  onDelete={() => void this.remove('images', image.id)}
                />
              ))}
            </Section>
            <Section
              title="Services"
              count={data.services.length}
              empty="No services: deploy with %deploy or the deploy form."
            >
              {data.services.map(service => (
                <React.Fragment key={service.name}>
                  <ServiceRow
                    service={service}
                    selected={selected?.name === service.name}
                    onSelect={() =>
                      this.model.select(
                        selected?.name === service.name ? null : service.name
                      )
                    }
                  />
                  {selected?.name === service.name ? (
                    <li className="jp-mlmagics-detail-item">
                      <ServiceDetail
                        service={selected}
                        logs={logs}
                        onTest={() =>
                          void openTestDialog(this.model.api, service.name)
                        }
                        onDelete={() =>
                          void this.remove('services', service.name)
                        }
                        onCopyKey={which =>
                          void this.copyKey(service.name, which)
                        }
                      />
                    </li>
                  ) : null}
                </React.Fragment>
              ))}
            </Section>
          </div>
        )}
      </>
    );
  }
}

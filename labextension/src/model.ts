/**
 * The panel's state: the last answer of the API, the selected service and its log lines, and one
 * line of news (an error or what just happened). Polls every few seconds, only while the panel is
 * visible and the browser tab is shown.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { DeploymentsAPI, IDeployments, IService } from './api';

export interface INotice {
  kind: 'error' | 'info';
  text: string;
  /** Errors of the poll clear themselves when the next poll succeeds; the others stay until dismissed. */
  fromPoll?: boolean;
}

export class DeploymentsModel {
  constructor(
    readonly api: DeploymentsAPI,
    isVisible: () => boolean,
    intervalMs = 3000
  ) {
    this._poll = new Poll({
      factory: () => this._load(),
      frequency: { interval: intervalMs, backoff: true, max: 30 * 1000 },
      standby: () => (isVisible() ? 'when-hidden' : true),
      name: 'mlmagics:deployments'
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get data(): IDeployments | null {
    return this._data;
  }

  get notice(): INotice | null {
    return this._notice;
  }

  /** The selected service, from the last answer (null when none is selected or it is gone). */
  get selected(): IService | null {
    const services = this._data?.services ?? [];
    return services.find(s => s.name === this._selected) ?? null;
  }

  get logs(): string[] {
    return this._logs;
  }

  select(name: string | null): void {
    this._selected = name;
    this._logs = [];
    this._changed.emit();
    void this.refresh();
  }

  /** Load now (the poll then goes on from here). */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  notify(notice: INotice | null): void {
    this._notice = notice;
    this._changed.emit();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _load(): Promise<void> {
    try {
      this._data = await this.api.deployments();
      const selected = this.selected;
      this._logs = selected ? await this.api.logs(selected.name) : [];
      if (this._notice?.fromPoll) {
        this._notice = null;
      }
    } catch (error) {
      this._notice = {
        kind: 'error',
        text: String((error as Error).message ?? error),
        fromPoll: true
      };
      throw error; // the poll backs off
    } finally {
      this._changed.emit();
    }
  }

  private _poll: Poll;
  private _data: IDeployments | null = null;
  private _selected: string | null = null;
  private _logs: string[] = [];
  private _notice: INotice | null = null;
  private _changed = new Signal<this, void>(this);
}

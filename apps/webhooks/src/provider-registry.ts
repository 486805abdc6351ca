import { ApiError } from '@smart-router/http';
import {
  ExotelAdapter, ExotelCredentials, PlivoAdapter, PlivoSignature, ProviderAdapter, TwilioAdapter, TwilioSignature,
} from '@smart-router/providers';
import { WebhooksConfig } from './webhooks.config';

/** The adapters by the name in the URL (`/api/v1/{provider}/...`). */
export class ProviderRegistry {
  private readonly adapters: ReadonlyMap<string, ProviderAdapter>;

  constructor(adapters: ProviderAdapter[]) {
    this.adapters = new Map(adapters.map((adapter) => [adapter.name, adapter]));
  }

  static fromConfig(config: WebhooksConfig): ProviderRegistry {
    return new ProviderRegistry([
      new TwilioAdapter(new TwilioSignature(config.twilioAuthTokens)),
      new PlivoAdapter(new PlivoSignature(config.plivoAuthTokens)),
      new ExotelAdapter(new ExotelCredentials(config.exotelCredentials)),
    ]);
  }

  get all(): ProviderAdapter[] {
    return [...this.adapters.values()];
  }

  /** An unknown provider is an unknown route, answered like any other 404. */
  get(name: string): ProviderAdapter {
    const adapter = this.adapters.get(name);
    if (!adapter) throw ApiError.notFound('route not found');
    return adapter;
  }
}

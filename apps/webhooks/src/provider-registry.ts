import { ApiError } from '@smart-router/http';
import {
  ExotelAdapter, ExotelCredentials, PlivoAdapter, PlivoSignature, ProviderAdapter, TwilioAdapter, TwilioSignature,
} from '@smart-router/providers';
import { ProviderName, WebhooksConfig } from './webhooks.config';

/** The adapters by the name in the URL (`/api/v1/{provider}/...`). */
export class ProviderRegistry {
  private readonly adapters: ReadonlyMap<string, ProviderAdapter>;

  constructor(adapters: ProviderAdapter[]) {
    this.adapters = new Map(adapters.map((adapter) => [adapter.name, adapter]));
  }

  /** Only the providers PROVIDERS enables: a disabled one's routes answer 404 like any unknown path. */
  static fromConfig(config: WebhooksConfig): ProviderRegistry {
    const adapters: Record<ProviderName, () => ProviderAdapter> = {
      twilio: () => new TwilioAdapter(new TwilioSignature(config.twilioAuthTokens)),
      plivo: () => new PlivoAdapter(new PlivoSignature(config.plivoAuthTokens)),
      exotel: () => new ExotelAdapter(new ExotelCredentials(config.exotelCredentials)),
    };
    return new ProviderRegistry(config.providers.map((name) => adapters[name]()));
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

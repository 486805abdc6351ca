import { ConfigError, EnvReader } from './env';
import { parseStoredAutoscaler, readFleetSettings, validateAutoscalerUpdate } from './autoscaler';

describe('fleet autoscaler settings', () => {
  const defaults = readFleetSettings(new EnvReader({})).autoscaler;

  it('defaults from AUTOSCALER_* with the autoscaler disabled; a bad value names the variable', () => {
    expect(readFleetSettings(new EnvReader({}))).toEqual({
      statefulSet: 'voice-agent',
      autoscaler: { enabled: false, min_replicas: 1, max_replicas: 20, buffer: 2, scale_down_delay_seconds: 300 },
    });
    expect(readFleetSettings(new EnvReader({ AUTOSCALER_ENABLED: 'true', AUTOSCALER_BUFFER: '4', VOICE_AGENT_STATEFULSET: 'agents' }))).toMatchObject({
      statefulSet: 'agents', autoscaler: { enabled: true, buffer: 4 },
    });
    expect(() => readFleetSettings(new EnvReader({ AUTOSCALER_BUFFER: '-1' }))).toThrow(ConfigError);
    expect(() => readFleetSettings(new EnvReader({ AUTOSCALER_MIN_REPLICAS: '5', AUTOSCALER_MAX_REPLICAS: '4' }))).toThrow(/AUTOSCALER_MIN_REPLICAS/);
  });

  it('an update is any subset of the fields, typed and bounded, min <= max after the merge', () => {
    expect(validateAutoscalerUpdate({ enabled: true, buffer: 0 }, defaults)).toEqual({ ok: true, settings: { ...defaults, enabled: true, buffer: 0 } });
    for (const body of [null, [], 'x', { enabled: 1 }, { buffer: 1.5 }, { max_replicas: 1001 }, { scale_down_delay_seconds: -1 }, { other: 1 }]) {
      expect(validateAutoscalerUpdate(body, defaults)).toMatchObject({ ok: false, code: 'INVALID_AUTOSCALER_CONFIG' });
    }
    expect(validateAutoscalerUpdate({ min_replicas: 21 }, defaults)).toMatchObject({ ok: false, code: 'INVALID_REPLICA_RANGE' });
  });

  it('stored settings fall back to the defaults when missing or unreadable', () => {
    expect(parseStoredAutoscaler(null, defaults)).toEqual(defaults);
    expect(parseStoredAutoscaler('not json', defaults)).toEqual(defaults);
    expect(parseStoredAutoscaler(JSON.stringify({ enabled: true }), defaults)).toEqual({ ...defaults, enabled: true });
  });
});

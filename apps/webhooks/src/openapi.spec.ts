import { describeOpenApi } from '@smart-router/testing';
import { bootstrap } from './main';

describeOpenApi('webhooks', bootstrap);

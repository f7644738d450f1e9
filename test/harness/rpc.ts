import { expect } from 'chai';
import { RpcError } from '../../terminal-protocol/errors.js';

/** The error a call rejects with (fails the test if it resolves, or rejects with something else). */
export async function rejection(call: Promise<unknown>): Promise<RpcError> {
  try {
    await call;
  } catch (error) {
    expect(error).to.be.instanceOf(RpcError);
    return error as RpcError;
  }
  expect.fail('the call succeeded');
}

#!/usr/bin/env python3
"""Runs localstripe, the stateful fake Stripe server, made closer to real Stripe where typed
clients need it.

    python localstripe_launcher.py --port N --from-scratch
    python localstripe_launcher.py --port N --store FILE

localstripe's objects leave out fields that real Stripe always sends, so a typed client (such as
async-stripe) cannot parse them. This launcher extends localstripe's resource classes before the
server starts, and changes nothing else about how localstripe decides outcomes:

- PaymentIntent: amount_capturable, amount_received, confirmation_method, payment_method_types,
  and the type of last_payment_error;
- Charge: amount_captured, billing_details, disputed;
- Event: pending_webhooks, request;
- BalanceTransaction: balance_type;
- lists of balance transactions and payouts: the `created` filter; lists of PaymentIntents: the
  `customer` and `created` filters.

Three more behaviours follow real Stripe, because code under test relies on them:

- an `Idempotency-Key` on a POST replays the first answer (the same status and body) when the same
  key comes again with the same parameters, answers 400 `idempotency_error` when the parameters
  differ, and 409 while the first request is still running;
- a card declined while confirming a PaymentIntent answers a `card_error` that carries the
  PaymentIntent, as Stripe's error object does;
- a SetupIntent that succeeds attaches its payment method to the SetupIntent's customer.

With `--from-scratch` the store is not written to /tmp/localstripe.pickle after every change
(nothing would read it, and several servers may run at once). With `--store FILE` the store is
read from FILE at start (when it exists and can be read) and written back to it after every
change, so that a development database's customers, cards and payments are still there when the
server is started again (infra/dev/run.sh keeps one store per database).

When SHIFTCOVER_LOCALSTRIPE_EXIT_ON_STDIN_EOF=1, the server exits as soon as its standard input
closes: a test process keeps the pipe open and the server dies with it, however it ends.
"""

import hashlib
import os
import pickle
import sys
import threading
import urllib.parse

from aiohttp import web

import localstripe.resources as resources
import localstripe.server as server
from localstripe.errors import UserError


def _extend_export(cls, fill):
    """Wraps cls._export so that `fill(obj, exported)` can add missing fields."""
    original = cls._export

    def _export(self, expand=None):
        exported = original(self, expand=expand)
        fill(self, exported)
        return exported

    cls._export = _export


def _fill_payment_intent(pi, out):
    status = out.get('status')
    out.setdefault('amount_capturable',
                   pi.amount if status == 'requires_capture' else 0)
    out.setdefault('amount_received', pi.amount if status == 'succeeded' else 0)
    out.setdefault('confirmation_method', 'automatic')
    out.setdefault('payment_method_types', ['card'])
    error = out.get('last_payment_error')
    if isinstance(error, dict):
        error.setdefault(
            'type',
            'invalid_request_error'
            if error.get('code') == 'payment_intent_authentication_failure'
            else 'card_error')


def _fill_charge(charge, out):
    captured = out.get('captured') and out.get('status') == 'succeeded'
    out.setdefault('amount_captured', charge.amount if captured else 0)
    out.setdefault('billing_details', {
        'address': None, 'email': None, 'name': None, 'phone': None})
    out.setdefault('disputed', False)


def _fill_event(event, out):
    out.setdefault('pending_webhooks', 0)
    out.setdefault('request', {'id': None, 'idempotency_key': None})


def _fill_balance_transaction(txn, out):
    out.setdefault('balance_type', 'payments')


_extend_export(resources.PaymentIntent, _fill_payment_intent)
_extend_export(resources.Charge, _fill_charge)
_extend_export(resources.Event, _fill_event)
_extend_export(resources.BalanceTransaction, _fill_balance_transaction)


# Lists of balance transactions and payouts take Stripe's `created` filter (gt, gte, lt, lte, or
# an exact time), which finance's import sends; localstripe itself refuses the parameter.
def _with_created_filter(cls):
    original = cls._api_list_all.__func__

    def _api_list_all(klass, url, created=None, **kwargs):
        li = original(klass, url, **kwargs)
        if created is None:
            return li
        if not isinstance(created, dict):
            created = {'eq': created}
        try:
            bounds = {k: int(v) for k, v in created.items()}
        except (TypeError, ValueError):
            raise UserError(400, 'Bad created filter')
        checks = {
            'gt': lambda c, b: c > b, 'gte': lambda c, b: c >= b,
            'lt': lambda c, b: c < b, 'lte': lambda c, b: c <= b,
            'eq': lambda c, b: c == b,
        }
        if any(k not in checks for k in bounds):
            raise UserError(400, 'Bad created filter')
        li._list = [o for o in li._list
                    if all(checks[k](o.created, b) for k, b in bounds.items())]
        return li

    cls._api_list_all = classmethod(_api_list_all)


_with_created_filter(resources.BalanceTransaction)
_with_created_filter(resources.Payout)


# Lists of PaymentIntents take Stripe's `customer` and `created` filters (a top-up retried after
# Stripe's 24-hour idempotency window looks for its PaymentIntent among the customer's), newest
# first as Stripe lists them.
def _payment_intent_filters():
    cls = resources.PaymentIntent
    _with_created_filter(cls)
    with_created = cls._api_list_all.__func__

    def _api_list_all(klass, url, customer=None, **kwargs):
        li = with_created(klass, url, **kwargs)
        if customer is not None:
            li._list = [o for o in li._list if getattr(o, 'customer', None) == customer]
        li._list.sort(key=lambda o: o.created, reverse=True)
        return li

    cls._api_list_all = classmethod(_api_list_all)


_payment_intent_filters()


# A declined confirmation: Stripe answers a card_error whose body carries the PaymentIntent.
_report_failure = resources.PaymentIntent._report_failure


def _report_failure_with_intent(self):
    try:
        _report_failure(self)
    except UserError as e:
        e.body['error']['type'] = 'card_error'
        e.body['error'].setdefault('decline_code', 'generic_decline')
        e.body['error']['payment_intent'] = self._export()
        raise


resources.PaymentIntent._report_failure = _report_failure_with_intent


# A successful SetupIntent attaches its payment method to its customer. Every path to success
# (a first confirmation, or the second one after 3-D Secure) sets `status`, so that is the hook.
def _setup_intent_setattr(self, name, value):
    object.__setattr__(self, name, value)
    if name == 'status' and value == 'succeeded' and \
            getattr(self, 'customer', None) and \
            getattr(self, 'payment_method', None):
        pm = resources.PaymentMethod._api_retrieve(self.payment_method)
        if getattr(pm, 'customer', None) is None:
            pm.customer = self.customer


resources.SetupIntent.__setattr__ = _setup_intent_setattr


# Idempotency keys, kept for the life of the process.
_idempotent = {}
_in_flight = set()


@web.middleware
async def idempotency_middleware(request, handler):
    key = request.headers.get('Idempotency-Key')
    if request.method != 'POST' or not key:
        return await handler(request)
    scope = (request.headers.get('Authorization', ''), key)
    body = await request.read()
    # Parameters, not bytes: form fields may come in any order (a map's iteration order).
    try:
        params = sorted(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        params = [('', body.hex())]
    fingerprint = hashlib.sha256(
        repr((request.path, params)).encode()).hexdigest()
    saved = _idempotent.get(scope)
    if saved is not None:
        if saved['fingerprint'] != fingerprint:
            return web.json_response({'error': {
                'type': 'idempotency_error',
                'message': 'Keys for idempotent requests can only be used '
                           'with the same parameters they were first used '
                           'with.'}}, status=400)
        response = web.Response(body=saved['body'], status=saved['status'],
                                content_type='application/json')
        response.headers['Idempotent-Replayed'] = 'true'
        return response
    if scope in _in_flight:
        return web.json_response({'error': {
            'type': 'idempotency_error',
            'message': 'There is currently another in-progress request '
                       'using this Idempotent Key.'}}, status=409)
    _in_flight.add(scope)
    try:
        response = await handler(request)
    finally:
        _in_flight.discard(scope)
    # Stripe saves every result of a request that began executing; a 400 from parameter
    # validation and any 5xx are not saved, so the request can be corrected or retried.
    if response.status < 500 and response.status != 400 and \
            getattr(response, 'body', None) is not None:
        _idempotent[scope] = {'fingerprint': fingerprint,
                              'status': response.status,
                              'body': bytes(response.body)}
    return response


# Outermost, so that it sees the final answer, errors included.
server.app.middlewares.insert(0, idempotency_middleware)


def _watch_stdin():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def _take_option(name):
    """Removes `name VALUE` from the command line (localstripe's own parser refuses it) and
    returns VALUE, or None when the option is absent."""
    args = sys.argv[1:]
    if name not in args:
        return None
    i = args.index(name)
    if i + 1 >= len(args):
        sys.exit(f'{name} needs a value')
    value = args[i + 1]
    del sys.argv[i + 1:i + 3]
    return value


def _keep_store_in(path):
    def load(self):
        try:
            with open(path, 'rb') as f:
                old = pickle.load(f)
        except FileNotFoundError:
            return
        except Exception as e:  # another localstripe's format, a torn file: start afresh
            print(f'localstripe store {path} not read ({e}); starting empty',
                  file=sys.stderr)
            return
        self.clear()
        self.update(old)

    def dump(self):
        tmp = f'{path}.tmp'
        with open(tmp, 'wb') as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


def main():
    store_path = _take_option('--store')
    if store_path is not None:
        if '--from-scratch' in sys.argv[1:]:
            sys.exit('--store and --from-scratch exclude each other')
        _keep_store_in(store_path)
    if '--from-scratch' in sys.argv[1:]:
        resources.Store.dump_to_disk = lambda self: None
    if os.environ.get('SHIFTCOVER_LOCALSTRIPE_EXIT_ON_STDIN_EOF') == '1':
        threading.Thread(target=_watch_stdin, daemon=True).start()
    server.start()


if __name__ == '__main__':
    main()

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

localstripe has no disputes and never fails a refund, so the launcher adds them, in Stripe's shape:

- Dispute (`dp_…`), read at GET /v1/disputes/{id} and listed at GET /v1/disputes (`charge`,
  `payment_intent` filters), with its balance transactions (`reporting_category` `dispute` for
  the withdrawal with Stripe's fee, `dispute_reversal` for the reinstatement) in the object;
- test-only control routes that move a dispute the way Stripe's would move:
  POST /_test/disputes (payment_intent or charge; amount, reason, status, due_by optional),
  POST /_test/disputes/{id}/withdraw (fee optional: Stripe takes the amount and its fee),
  POST /_test/disputes/{id}/respond (evidence submitted: under review),
  POST /_test/disputes/{id}/reinstate (won: the amount back, and the fee when return_fee=true),
  POST /_test/disputes/{id}/close (status: won, lost or warning_closed);
- POST /_test/refunds/{id}/fail (failure_reason optional): a refund that had succeeded fails
  afterwards (the bank returned it), with a `refund_failure` balance transaction.

Nothing here sends webhooks: tests build the events and deliver them signed, as Stripe would.

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
import time
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


# Disputes, which localstripe does not have.
_DISPUTE_STATUSES = ('warning_needs_response', 'warning_under_review', 'warning_closed',
                     'needs_response', 'under_review', 'won', 'lost', 'prevented')
_DISPUTE_FEE = 2000
_EVIDENCE_FIELDS = (
    'access_activity_log', 'billing_address', 'cancellation_policy',
    'cancellation_policy_disclosure', 'cancellation_rebuttal', 'customer_communication',
    'customer_email_address', 'customer_name', 'customer_purchase_ip', 'customer_signature',
    'duplicate_charge_documentation', 'duplicate_charge_explanation', 'duplicate_charge_id',
    'product_description', 'receipt', 'refund_policy', 'refund_policy_disclosure',
    'refund_refusal_explanation', 'service_date', 'service_documentation', 'shipping_address',
    'shipping_carrier', 'shipping_date', 'shipping_documentation', 'shipping_tracking_number',
    'uncategorized_file', 'uncategorized_text')


def _balance_transaction(amount, fee, currency, category, source, description,
                         type='adjustment'):
    """A balance transaction of a kind localstripe's constructor refuses (disputes, refund
    failures), stored like its own."""
    txn = resources.BalanceTransaction.__new__(resources.BalanceTransaction)
    resources.StripeObject.__init__(txn)
    txn.amount = amount
    txn.available_on = txn.created
    txn.currency = currency
    txn.description = description
    txn.exchange_rate = None
    txn.fee = fee
    txn.fee_details = [{'amount': fee, 'application': None, 'currency': currency,
                        'description': 'Dispute fee', 'type': 'stripe_fee'}] if fee else []
    txn.reporting_category = category
    txn.source = source
    txn.status = 'available'
    txn.type = type
    return txn


class Dispute(resources.StripeObject):
    object = 'dispute'
    _id_prefix = 'dp_'

    def __init__(self, charge, payment_intent, amount, currency, reason, status, due_by):
        super().__init__()
        self.amount = amount
        self.charge = charge
        self.currency = currency
        self.enhanced_eligibility_types = []
        self.evidence = dict({f: None for f in _EVIDENCE_FIELDS}, enhanced_evidence={})
        self.evidence_details = {'due_by': due_by, 'enhanced_eligibility': {},
                                 'has_evidence': False, 'past_due': False,
                                 'submission_count': 0}
        self.is_charge_refundable = True
        self.metadata = {}
        self.network_reason_code = None
        self.payment_intent = payment_intent
        self.payment_method_details = None
        self.reason = reason
        self.status = status
        self._withdrawal = None
        self._reinstatement = None

    def _export(self, expand=None):
        out = super()._export(expand=expand)
        out['balance_transactions'] = [
            resources.BalanceTransaction._api_retrieve(t)._export()
            for t in (self._withdrawal, self._reinstatement) if t is not None]
        due_by = self.evidence_details.get('due_by')
        out['evidence_details']['past_due'] = bool(
            due_by and due_by < int(time.time()) and
            self.status in ('needs_response', 'warning_needs_response'))
        return out


def _form_int(data, name, default):
    value = data.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(400, f'Bad {name}')


def _find_intent_of_charge(charge_id):
    for key, obj in list(resources.store.items()):
        if key.startswith('payment_intent:') and \
                getattr(getattr(obj, 'latest_charge', None), 'id', None) == charge_id:
            return obj.id
    return None


def _dispute_json(dispute):
    return server.json_response(dispute._export())


async def _retrieve_dispute(request):
    return _dispute_json(Dispute._api_retrieve(request.match_info['id']))


async def _list_disputes(request):
    charge = request.query.get('charge')
    payment_intent = request.query.get('payment_intent')
    found = [o for k, o in list(resources.store.items()) if k.startswith('dispute:')
             and (charge is None or o.charge == charge)
             and (payment_intent is None or o.payment_intent == payment_intent)]
    found.sort(key=lambda d: d.created, reverse=True)
    return server.json_response({'object': 'list', 'url': '/v1/disputes', 'has_more': False,
                                 'data': [d._export() for d in found]})


async def _create_dispute(request):
    data = await server.get_post_data(request) or {}
    payment_intent = data.get('payment_intent')
    charge = data.get('charge')
    if payment_intent:
        pi = resources.PaymentIntent._api_retrieve(payment_intent)
        if pi.latest_charge is None:
            raise UserError(400, 'The PaymentIntent has no charge')
        charge_obj = pi.latest_charge
    elif charge:
        charge_obj = resources.Charge._api_retrieve(charge)
        payment_intent = _find_intent_of_charge(charge)
    else:
        raise UserError(400, 'Expected charge or payment_intent')
    if charge_obj.status != 'succeeded':
        raise UserError(400, 'Only a succeeded charge can be disputed')
    status = data.get('status', 'needs_response')
    if status not in _DISPUTE_STATUSES:
        raise UserError(400, 'Bad status')
    amount = _form_int(data, 'amount', charge_obj.amount)
    if not 0 < amount <= charge_obj.amount:
        raise UserError(400, 'Bad amount')
    due_by = _form_int(data, 'due_by', int(time.time()) + 7 * 24 * 3600)
    dispute = Dispute(charge_obj.id, payment_intent, amount, charge_obj.currency,
                      data.get('reason', 'fraudulent'), status, due_by)
    charge_obj.disputed = True
    return _dispute_json(dispute)


async def _withdraw_dispute(request):
    dispute = Dispute._api_retrieve(request.match_info['id'])
    data = await server.get_post_data(request) or {}
    if dispute._withdrawal is not None:
        raise UserError(400, 'The funds were already withdrawn')
    fee = _form_int(data, 'fee', _DISPUTE_FEE)
    txn = _balance_transaction(-dispute.amount, fee, dispute.currency, 'dispute', dispute.id,
                               'Chargeback withdrawal for ' + dispute.charge)
    dispute._withdrawal = txn.id
    dispute.is_charge_refundable = False
    return _dispute_json(dispute)


async def _respond_to_dispute(request):
    dispute = Dispute._api_retrieve(request.match_info['id'])
    if dispute.status not in ('needs_response', 'warning_needs_response'):
        raise UserError(400, 'The dispute is not waiting for a response')
    dispute.status = dispute.status.replace('needs_response', 'under_review')
    details = dispute.evidence_details
    details['has_evidence'] = True
    details['submission_count'] += 1
    return _dispute_json(dispute)


async def _reinstate_dispute(request):
    dispute = Dispute._api_retrieve(request.match_info['id'])
    data = await server.get_post_data(request) or {}
    if dispute._withdrawal is None:
        raise UserError(400, 'No funds were withdrawn')
    if dispute._reinstatement is not None:
        raise UserError(400, 'The funds were already reinstated')
    withdrawn = resources.BalanceTransaction._api_retrieve(dispute._withdrawal)
    return_fee = str(data.get('return_fee', 'false')).lower() == 'true'
    txn = _balance_transaction(-withdrawn.amount, -withdrawn.fee if return_fee else 0,
                               dispute.currency, 'dispute_reversal', dispute.id,
                               'Chargeback reversal for ' + dispute.charge)
    dispute._reinstatement = txn.id
    dispute.status = 'won'
    return _dispute_json(dispute)


async def _close_dispute(request):
    dispute = Dispute._api_retrieve(request.match_info['id'])
    data = await server.get_post_data(request) or {}
    status = data.get('status', 'lost')
    if status not in ('won', 'lost', 'warning_closed'):
        raise UserError(400, 'Bad status')
    dispute.status = status
    return _dispute_json(dispute)


async def _fail_refund(request):
    refund = resources.Refund._api_retrieve(request.match_info['id'])
    data = await server.get_post_data(request) or {}
    if refund.status != 'succeeded':
        raise UserError(400, 'Only a succeeded refund can fail')
    refund.status = 'failed'
    refund.failure_reason = data.get('failure_reason', 'lost_or_stolen_card')
    txn = _balance_transaction(refund.amount, 0, refund.currency, 'refund_failure', refund.id,
                               'REFUND FAILURE', type='refund_failure')
    refund.failure_balance_transaction = txn.id
    return server.json_response(refund._export())


server.app.router.add_get('/v1/disputes/{id}', _retrieve_dispute)
server.app.router.add_get('/v1/disputes', _list_disputes)
server.app.router.add_post('/_test/disputes', _create_dispute)
server.app.router.add_post('/_test/disputes/{id}/withdraw', _withdraw_dispute)
server.app.router.add_post('/_test/disputes/{id}/respond', _respond_to_dispute)
server.app.router.add_post('/_test/disputes/{id}/reinstate', _reinstate_dispute)
server.app.router.add_post('/_test/disputes/{id}/close', _close_dispute)
server.app.router.add_post('/_test/refunds/{id}/fail', _fail_refund)


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

"""Privacy scenarios of the attack lab (docs/threat-model.md rows 3, 5, 8).

* ``bad-aggregator`` (row 8): one aggregator of the seven posts a wrong partial sum (signed:
  it is its own statement) in some slots. The validators decode the feeder total from all
  seven partials, accepting only a polynomial that 2t - 1 = 5 of them agree on, so up to
  t - 1 colluders could neither choose the total nor push an honest partial out — read
  from the ledger's ``aggregator_rejected`` and ``aggregate`` events: the lie is left out
  and the accepted total is the true one. Leaving out is not a sanction (decoding is
  never evidence); only the aggregator's own contradictory signatures are.
* ``usage-inference`` (row 3) and ``deanonymize`` (row 5) are one curious validator's
  analysis of what it really holds after the run (``sim.privacy_view``): its own SQLite store
  file, opened read-only, and its node's HTTP API, restarted from that store on loopback —
  nothing the simulator knows. Its household list comes from the genesis registry. Every
  reading on its ledger is a unit to attribute: a reading under a household's own cp is
  attributed at once (clear mode); pseudonymous ones are tracked across slots by their
  metered net, envelope and order (side, price) and the resulting chains assigned to
  households by their summed final balances against each member's epoch claim, by selling
  against the registry role, and by every identity a dispute opened
  (``privacy.attacks.chain_pseudonyms`` / ``label_chains``). ``deanonymize`` reports the
  share of readings attributed to the right household against chance (1/households) and
  the bound 2 x chance; ``usage-inference`` builds each household's curve from its
  attributed readings (the slot's mean where none) and reports the Pearson correlation of
  the household-specific part (residual from the community's mean profile) against the
  stated bound 2/sqrt(households): a feeder mean carries 1/N of every residual.
  Also reported, not bounded: what an observer with a leaked earlier day of every
  household's curve would link (``with_leaked_history``), and what per-epoch rotation
  (one pseudonym a household and day) would have given on the same ledger.
"""

from __future__ import annotations

import weakref
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from gridledger.crypto.shamir import decode_signed
from gridledger.ledger.modules.privacy.records import pseudo_cp
from gridledger.privacy.attacks import (
    HouseholdAnchors,
    SlotView,
    chain_pseudonyms,
    label_chains,
    link_by_prior,
)
from gridledger.privacy.attacks import mean_row_correlation as _mean_corr
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import household_net_wh
from gridledger.sim.context import SimContext
from gridledger.sim.forked import start_forked
from gridledger.sim.privacy_view import Observation, node_api, observe_store, store_paths


class BadAggregator(Attack):
    name = "bad-aggregator"
    threat = "8 malicious aggregator"
    defence = ("seven aggregators compute the feeder total redundantly; validators accept "
               "only a total that 2t - 1 signed partial sums agree on, leave out the one off "
               "the polynomial, and compare the total with the readings")
    liar = 4
    window = (0.25, 0.75)

    def setup(self) -> None:
        self.tampered: dict[int, int] = {}   # slot -> offset added
        self.rejected: set[int] = set()
        self.accepted: dict[int, int] = {}   # slot -> total the ledger accepted

    def partials(self, slot: int, values: list[int]) -> list[int]:
        if not self.eng.in_window(slot, *self.window) or slot % 3:
            return values
        # a plausible lie: shift the community total by 5 kWh (a value off the polynomial)
        rnd = self.eng.rounds.get(slot)
        at = [i for i, p in enumerate(rnd.partials) if p.position == self.liar] if rnd else []
        if not at:
            return values
        offset = 5_000 + slot % 7
        self.tampered[slot] = offset
        out = list(values)
        out[at[0]] = (out[at[0]] + offset) % (2**127 - 1)
        return out

    def on_block(self, fb: Any, events: list[dict[str, Any]]) -> None:
        name = self.eng.community.privacy_keys.aggregator_keys[self.liar].aggregator_id  # type: ignore[union-attr]
        for e in events:
            if e.get("type") == "aggregator_rejected" and e["aggregator"] == name:
                self.rejected.add(e["slot"])
            elif e.get("type") == "aggregate" and e["slot"] in self.tampered:
                self.accepted[e["slot"]] = e["total_wh"]

    def result(self) -> dict[str, Any]:
        # the honest total is the meters' readings as they shared them (clamped by the
        # committee's bound, ``sim.secagg.CLIP``): a generator member beyond the bound is
        # summed at it by honest aggregators too (at 1,000 members on
        # 1-MVLV-semiurb-all-2-sw one exports up to 1.6 MWh a slot), so comparing with the
        # unclamped readings counted the clamp as the liar's success
        rounds = self.eng.rounds
        wrong = sum(1 for s, t in self.accepted.items()
                    if s in rounds and t != rounds[s].true_total_wh)
        detected = len(self.rejected & set(self.tampered))
        return self.record(len(self.tampered), detected,
                           mitigated=wrong == 0 and detected == len(self.tampered), loss=0,
                           wrong_totals_accepted=wrong,
                           clipped_wh=sum(rounds[s].clipped_wh for s in self.tampered
                                          if s in rounds),
                           aggregator=f"aggregator-{self.liar}")


def standardised(x: np.ndarray) -> np.ndarray:
    """Each row as z-scores over the run (rows without variance: 0)."""
    sd = x.std(axis=1, keepdims=True)
    out: np.ndarray = (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    return out


def residual_correlation(est: np.ndarray, truth: np.ndarray) -> float:
    """Mean Pearson correlation of the household-specific parts of estimate and truth: each
    household's standardised curve less the community's mean standardised profile. In Wh the
    community mean is dominated by the largest PV systems, so raw residuals of different
    households correlate (0.38 for a random guess on the demo's day); standardised, a random
    guess scores about 0."""
    shape = standardised(truth).mean(axis=0, keepdims=True)
    return _mean_corr(standardised(est) - shape, standardised(truth) - shape)


def _random_guess(truth: np.ndarray, eng: SimContext) -> float:
    """What a guess without information scores: other households' curves, seeded."""
    rng = np.random.default_rng(eng.sc.seed)
    return float(np.mean([residual_correlation(truth[rng.permutation(len(truth))], truth)
                          for _ in range(20)]))


def _index(chains: list[list[bytes]], p: bytes) -> int:
    return next(i for i, c in enumerate(chains) if p in c)


_OBSERVED: weakref.WeakKeyDictionary[SimContext, Analysis] = weakref.WeakKeyDictionary()


class Analysis:
    """One curious validator's analysis of its own store and API (shared by the scenarios)."""

    def __getstate__(self) -> dict[str, Any]:
        # from the forked worker (``analysis_started``): the run's context stays here
        return {k: v for k, v in self.__dict__.items() if k != "eng"}

    def bind(self, eng: SimContext) -> Analysis:
        """This analysis, attached to the run it analysed (after unpickling)."""
        self.eng = eng
        return self

    def __init__(self, eng: SimContext) -> None:
        self.eng = eng
        k = 1 if len(eng.net.validators) > 1 else 0   # not the entry node: any validator
        path = store_paths(eng)[k]
        with node_api(path, k, eng.community.validators[k]) as api:
            self.obs: Observation = observe_store(path, k, api)
        obs = self.obs
        self.households = list(obs.households)
        self.cp_of = obs.household_cp
        by_cp = {cp: h for h, cp in self.cp_of.items()}
        ps_of_cp = {pseudo_cp(p): p for p in obs.pseudonyms}
        self.slots = sorted(s for s in eng.data.delivered_slots if s in eng.trading_slots())
        # every reading on the ledger is a unit: (slot, cp) -> the household it names, if any
        self.units = [(s, cp) for (s, cp) in sorted(obs.readings) if s in set(self.slots)]
        self.guess: dict[tuple[int, str], bytes] = {}
        # the image each reading attested, as far as the store tells (sealed: unknown)
        self.image_of = {u: img for u in self.units if (img := obs.image_of(*u)) is not None}
        self._image_index = {h: float(i) for i, h in enumerate(sorted(set(self.image_of.values())))}
        views = []
        for s in self.slots:
            ps = sorted(ps_of_cp[cp] for (t, cp) in self.units if t == s and cp in ps_of_cp)
            views.append(self._view(s, ps))
            for (t, cp) in self.units:
                if t == s and cp in by_cp:
                    self.guess[(s, cp)] = by_cp[cp]                    # named in clear
        self.views = views
        self.ps_of_cp = ps_of_cp
        self.sells = {p for (_s, p), o in obs.orders.items() if o[0] > 0}
        clear = dict(self.guess)
        self.guess.update(self._link(views))
        # the same analysis without the certificates' battery sub-meter reports: what that
        # channel adds (issue 19: certificates under pseudonyms)
        self.guess_without_storage = {**clear, **self._link(
            [replace(v, storage_wh=None) for v in views])}
        # ... and without the meters' firmware images (what the image channel adds)
        self.guess_without_images = {**clear, **self._link(
            [replace(v, image=None) for v in views])}
        # truth, for scoring only: who each unit really is, and what each household drew
        ids = eng.identities
        self.truth_owner = {u: m.address for u in self.units
                            if (m := ids.owner_of_cp(u[1])) is not None}
        cps = [self.cp_of[h] for h in self.households]
        self.truth = np.array([[-int(eng.delivered_truth(s, cp)) for s in self.slots]
                               for cp in cps], dtype=np.float64)

    def _link(self, views: list[SlotView]) -> dict[tuple[int, str], bytes]:
        """Chain each epoch's pseudonyms across slots and label the chains with households:
        every pseudonymous unit -> the household it is attributed to."""
        obs, anchors, links = self.obs, self._anchors(), {}
        for epoch in sorted({s // obs.epoch_slots for s in self.slots}):
            chains = chain_pseudonyms([v for v in views if v.slot // obs.epoch_slots == epoch])
            links.update(label_chains(chains, obs.finals, self.sells, anchors(epoch)))
        return {(s, cp): links[self.ps_of_cp[cp]] for (s, cp) in self.units
                if cp in self.ps_of_cp and self.ps_of_cp[cp] in links}

    def _view(self, slot: int, pseudonyms: list[bytes]) -> SlotView:
        obs = self.obs
        net = np.array([obs.readings.get((slot, pseudo_cp(p)), np.nan) for p in pseudonyms],
                       dtype=np.float64)
        env = np.array([obs.envelopes.get((slot, pseudo_cp(p)), (np.nan, np.nan))
                        for p in pseudonyms], dtype=np.float64).reshape(len(pseudonyms), 2)
        orders = np.array([obs.orders.get((slot, p), (np.nan, np.nan, np.nan))
                           for p in pseudonyms], dtype=np.float64).reshape(len(pseudonyms), 3)
        storage = np.array([obs.storage.get((slot, pseudo_cp(p)), np.nan) for p in pseudonyms],
                           dtype=np.float64)
        index = self._image_index
        image = np.array([index.get(self.image_of.get((slot, pseudo_cp(p)), b""), np.nan)
                          for p in pseudonyms], dtype=np.float64)
        return SlotView(slot, tuple(pseudonyms), net, env, orders, storage, image)

    def _anchors(self) -> Any:
        obs = self.obs
        can_sell = np.array(["prosumer" in obs.household_roles[h] for h in self.households])

        def of(epoch: int) -> HouseholdAnchors:
            # a member's claim = deposit - allowances drawn + its pseudonyms' finals; every
            # ticket it bought was registered, so its pseudonyms' finals add up to the claim
            claims = np.array([float(obs.claims[(epoch, h)]) if (epoch, h) in obs.claims
                               else np.nan for h in self.households])
            return HouseholdAnchors(tuple(self.households), can_sell, claims, obs.opened)
        return of

    # -- figures ---------------------------------------------------------------------------
    def image_anonymity(self) -> dict[str, float]:
        """What the firmware images leave of a pseudonym's anonymity set: over the
        pseudonymous readings, the mean number of the slot's pseudonyms whose image the
        store does not tell apart from its own (a sealed image: every pseudonym of the
        slot), and the share of readings whose image the store shows."""
        sizes, shown = [], 0
        for s in self.slots:
            units = [u for u in self.units if u[0] == s and u[1] in self.ps_of_cp]
            for u in units:
                img = self.image_of.get(u)
                shown += img is not None
                sizes.append(len(units) if img is None else
                             sum(1 for v in units if self.image_of.get(v) in (img, None)))
        return {"mean_set": round(float(np.mean(sizes)), 2) if sizes else 0.0,
                "readings_with_image_shown": round(shown / max(1, len(sizes)), 3)}

    def accuracy(self, guess: dict[tuple[int, str], bytes],
                 households: set[bytes] | None = None) -> float:
        """Share of the readings attributed to the right household (of ``households``'
        readings only, when given)."""
        units = [u for u in self.units if u in self.truth_owner
                 and (households is None or self.truth_owner[u] in households)]
        return sum(guess.get(u) == self.truth_owner[u] for u in units) / max(1, len(units))

    def estimate(self) -> np.ndarray:
        """Each household's net-import curve as the adversary reconstructs it."""
        col = {s: k for k, s in enumerate(self.slots)}
        by_h = {h: i for i, h in enumerate(self.households)}
        est = np.full(self.truth.shape, np.nan)
        for (s, cp), h in self.guess.items():
            est[by_h[h], col[s]] = self.obs.readings[(s, cp)]
        mean = np.array([np.mean([self.obs.readings[u] for u in self.units if u[0] == s] or [0])
                         for s in self.slots])
        return np.where(np.isnan(est), mean[None, :], est)

    def per_epoch_counterfactual(self) -> dict[str, float]:
        """Linkage had every household kept one pseudonym for the epoch (the same readings,
        one name a day): the chains are then exact and only the labelling is left, from the
        ledger alone and with a leaked earlier day."""
        obs, sells = self.obs, self.sells
        anchors = self._anchors()
        prior = self.prior()
        guess: dict[tuple[int, str], bytes] = {}
        leaked: dict[tuple[int, str], bytes] = {}
        for epoch in sorted({s // obs.epoch_slots for s in self.slots}):
            days: dict[bytes, list[tuple[int, str]]] = {}
            for (s, cp) in self.units:
                if s // obs.epoch_slots == epoch and cp in self.ps_of_cp:
                    days.setdefault(self.truth_owner[(s, cp)], []).append((s, cp))
            chains = [[self.ps_of_cp[cp] for _s, cp in u] for u in days.values()]
            for k, h in label_chains(chains, obs.finals, sells, anchors(epoch)).items():
                guess.update(dict.fromkeys(list(days.values())[_index(chains, k)], h))
            cost = np.array([[sum(abs(obs.readings[(s, cp)] - prior[j, s % 96]) for s, cp in u)
                              for j in range(len(self.households))] for u in days.values()])
            for r, c in zip(*linear_sum_assignment(cost), strict=True):
                leaked.update(dict.fromkeys(list(days.values())[r], self.households[c]))
        return {"ledger_only": round(self.accuracy(guess), 3),
                "with_leaked_history": round(self.accuracy(leaked), 3)}

    def prior(self) -> np.ndarray:
        """Every household's net import on the day before the run (the leaked history)."""
        eng = self.eng
        # a run that starts on the profile year's first day has no day before: its own first
        # day stands in (numpy used to wrap a negative slot round to the year's last day)
        day0 = max(eng.first - eng.first % 96 - 96, eng.model.window.start)
        return np.array([[-household_net_wh(eng.model, self.cp_of[h], day0 + k)
                          for k in range(96)] for h in self.households], dtype=np.float64)

    def leaked_history(self) -> float:
        """Linkage by an observer that also holds every household's curve of the day before
        the run (say, leaked from an earlier clear-mode day), slot by slot."""
        links = link_by_prior(self.views, self.prior(), self.households)
        guess = dict(self.guess)
        for (s, cp) in self.units:
            if cp in self.ps_of_cp and self.ps_of_cp[cp] in links:
                guess[(s, cp)] = links[self.ps_of_cp[cp]]
        return self.accuracy(guess)


def analysis(eng: SimContext) -> Analysis:
    """The run's curious-validator analysis (computed once, after the run: in a process of
    its own when ``analysis_started`` started it)."""
    got = _OBSERVED.get(eng)
    if got is None:
        started = _STARTED.pop(eng, None)
        got = _OBSERVED[eng] = Analysis(eng) if started is None else started.result().bind(eng)
    return got


_STARTED: weakref.WeakKeyDictionary[SimContext, Future[Analysis]] = weakref.WeakKeyDictionary()
def analysis_started(eng: SimContext) -> None:
    """Start the run's curious-validator analysis in a forked process (once): it reads only
    the validator's closed store (and its node restarted from it) and the run's records,
    which the child inherits; ``analysis`` takes its result (issue 19: ~2-3 s of a privacy
    day's main core after the run, now beside the audit check and the follower's tail;
    the same analysis, same figures)."""
    if eng in _STARTED or eng in _OBSERVED:
        return
    started = start_forked(lambda: Analysis(eng))
    if started is not None:  # else ``analysis`` computes it here
        _STARTED[eng] = started


class UsageInference(Attack):
    name = "usage-inference"
    threat = "3 energy usage data leakage"
    defence = ("readings under per-slot pseudonyms that one validator's store cannot link to "
               "households; secure aggregation (no node sees a household reading); DP on "
               "published aggregates")
    measured_at_end = True  # analyses the validator's finished store (cached per run)

    def after_run(self) -> None:
        analysis_started(self.eng)   # beside what the run does next (``analysis``)

    def result(self) -> dict[str, Any]:
        a = analysis(self.eng)
        if len(a.slots) < 3:
            return self.record(0, 0, mitigated=True, loss=0, note="run too short")
        truth, est = a.truth, a.estimate()
        n = len(a.households)
        population = np.repeat(truth.mean(axis=0, keepdims=True), n, axis=0)
        bound = 2.0 / float(np.sqrt(n))
        resid = residual_correlation(est, truth)
        # a curious aggregator decodes its own share of each meter as if it were the reading
        rounds = self.eng.rounds
        own = np.array([[decode_signed(rounds[s].first_aggregator_shares.get(a.cp_of[h], 0))
                         if s in rounds else 0 for s in a.slots] for h in a.households],
                       dtype=float)
        own = np.clip(own, -10**7, 10**7)  # shares are uniform field elements: keep finite
        agg_corr = _mean_corr(own, truth)
        out = {
            "households": n, "slots": len(a.slots),
            "view": f"validator-{a.obs.validator}'s store file and its node's HTTP API "
                    f"({a.obs.api_calls} requests)",
            "readings_on_ledger": len(a.units),
            "readings_naming_a_household": sum(1 for u in a.units
                                               if u[1] in set(a.cp_of.values())),
            "correlation": round(_mean_corr(est, truth), 3),
            "population_profile_correlation": round(_mean_corr(population, truth), 3),
            "residual_correlation": round(resid, 3),
            "residual_correlation_of_a_random_guess": round(_random_guess(truth, self.eng), 3),
            "residual_bound": round(bound, 3),
            "curious_aggregator_correlation": round(agg_corr, 3),
        }
        out["note"] = (f"measured on {out['view']}: household-specific correlation "
                       f"{out['residual_correlation']} (bound {out['residual_bound']}, a random "
                       f"guess {out['residual_correlation_of_a_random_guess']}); "
                       f"{out['readings_naming_a_household']} of {out['readings_on_ledger']} "
                       f"readings name a household; a curious aggregator "
                       f"{out['curious_aggregator_correlation']}")
        # injected: one curious validator; a passive attack is not detectable: the defence
        # is the bound on what it learns
        return self.record(1, 0, mitigated=abs(resid) <= bound and abs(agg_corr) <= bound,
                           loss=0, passive=True, **out)


class Deanonymize(Attack):
    name = "deanonymize"
    threat = "5 privacy (market, data)"
    defence = ("pseudonyms rotated per slot, certified by k-of-n trustees, identity escrowed; "
               "nothing on the ledger names the household behind a reading or an order")
    measured_at_end = True  # analyses the validator's finished store (cached per run)

    def after_run(self) -> None:
        analysis_started(self.eng)   # beside what the run does next (``analysis``)

    def result(self) -> dict[str, Any]:
        a = analysis(self.eng)
        n = len(a.households)
        if not a.units or n < 2:
            return self.record(0, 0, mitigated=True, loss=0, note="run too short")
        acc_all = a.accuracy(a.guess)
        # the bound is on households no dispute opened: an opening is the escrow's designed,
        # logged disclosure of a pseudonym at fault (and anchors the chain through it), not
        # a leak; the figure over every household is reported beside it
        opened = set(a.obs.opened.values())
        kept = set(a.households) - opened
        acc = a.accuracy(a.guess, kept)
        without_storage = a.accuracy(a.guess_without_storage, kept)
        without_images = a.accuracy(a.guess_without_images, kept)
        chance = 1.0 / n
        bound = 2.0 * chance
        view = f"validator-{a.obs.validator}'s store file and its node's HTTP API"
        per_epoch = a.per_epoch_counterfactual() if a.obs.pseudonyms else {}
        leaked = round(a.leaked_history(), 3) if a.obs.pseudonyms else None
        note = (f"measured on {view}: {len(a.units)} readings under "
                f"{len(a.obs.pseudonyms)} pseudonyms, linkage {acc:.3f} of the "
                f"{len(kept)} households no dispute opened (chance {chance:.3f}, bound "
                f"{bound:.3f}; {acc_all:.3f} over all, openings included)")
        if per_epoch:
            note += (f"; with a leaked earlier day {leaked}; one pseudonym a day would give "
                     f"{per_epoch['ledger_only']} ({per_epoch['with_leaked_history']} with the "
                     f"leaked day)")
        return self.record(
            len(a.units), 0, mitigated=acc <= bound, loss=0, passive=True,
            linkage_accuracy=round(acc, 3), chance=round(chance, 3), bound=round(bound, 3),
            linkage_accuracy_all_households=round(acc_all, 3),
            households_opened_by_disputes=len(opened & set(a.households)),
            pseudonyms=len(a.obs.pseudonyms), opened_by_disputes=len(a.obs.opened), view=view,
            storage_readings_seen=len(a.obs.storage),
            linkage_without_storage_readings=round(without_storage, 3),
            linkage_added_by_storage_readings=round(acc - without_storage, 3),
            linkage_without_images=round(without_images, 3),
            linkage_added_by_images=round(acc - without_images, 3),
            image_anonymity=a.image_anonymity(),
            rotation_counterfactual={"per-epoch": per_epoch} if per_epoch else {},
            with_leaked_history=leaked, note=note)

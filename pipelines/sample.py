"""Deterministic sample crawl: realistic gzip WARC files plus a ground-truth file for every stage's tests.

Writes ``sample-00000.warc.gz`` … and ``sample_truth.json``: HTML pages on a few dozen fake hosts
(``https://www.<site>.example/``) with real-looking boilerplate (nav bar, cookie banner, sidebar, comments,
footer) around an ``<article>``, in seven languages (English the majority), with planted cases the pipeline
must handle: near-duplicate clusters, PII (and look-alikes that are not PII), low-quality pages, non-HTML
responses, a 404, a 301 and one response whose HTTP payload is malformed. The same seed gives byte-identical
files; an unchanged file is not rewritten, so its mtime (and every downstream cache key) stays put.

    lmpipe sample --output DIR [--pages 520] [--files 4] [--seed 1234]
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import html
import ipaddress
import json
import logging
import os
import random
import re
import struct
import tempfile
import time
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.config import SampleConfig

logger = logging.getLogger(__name__)

TRUTH_FILE = "sample_truth.json"
WARC_DATE_BASE = datetime(2024, 3, 1, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------------------------
# Lexicons. Strings are comma-separated; English nouns take "singular/plural" where the plural is irregular,
# other languages' nouns "word gender" (m, f, n for German; de/het for Dutch).


def _items(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.replace("\n", " ").split(",") if s.strip())


_EN_FIRST = _items("""Alice, Ben, Chloe, Daniel, Emma, Farid, Grace, Hannah, Isaac, Jasmine, Kevin, Laura, Marcus,
Nadia, Oliver, Priya, Quentin, Rachel, Samuel, Tara, Umar, Vanessa, William, Yasmin, Zoe, Aaron, Bethany, Connor,
Deborah, Elliot, Fiona, George, Holly, Ian, Julia, Karim, Lucy, Martin, Naomi, Owen, Paula, Rhys, Sofia, Thomas, Ursula,
Victor, Wendy, Xavier, Yusuf, Zara, Adam, Bella, Callum, Daisy, Ethan, Freya, Harvey, Imogen, Jack, Keira""")
_EN_LAST = _items("""Anderson, Bennett, Carter, Dawson, Ellis, Fletcher, Gallagher, Hughes, Iqbal, Jenkins, Kowalski,
Lawson, Mitchell, Novak, O'Brien, Patel, Quinn, Russell, Sullivan, Thornton, Underwood, Vaughan, Walsh, Young,
Zimmerman, Abbott, Barnes, Chapman, Doyle, Edwards, Foster, Gibson, Harper, Ingram, Jordan, Kemp, Lloyd, Morgan, Nash,
Owens, Porter, Reid, Shaw, Turner, Vance, Watts, Brooks, Coleman, Dixon, Fraser, Grant, Holmes, Kaur, Lambert, Marsh,
Nolan, Palmer, Rowe, Stone, Webb""")
_EN_CITIES = _items("""Portland, Leeds, Bristol, Denver, Halifax, Adelaide, Cork, Dunedin, Sheffield, Austin, Norwich,
Tacoma, Brighton, Hobart, Galway, Madison, Exeter, Boulder, Perth, Savannah, Swansea, Burlington, Aberdeen, Eugene,
Canterbury, Boise, Dundee, Ithaca, York, Asheville, Bath, Spokane, Inverness, Santa Fe, Oxford, Tulsa, Derby, Fresno,
Lincoln, Geelong, Nottingham, Saskatoon, Plymouth, Ottawa, Leicester, Wollongong, Cardiff, Kelowna, Belfast, Buffalo""")
_EN_ORG_A = _items("""Riverside, Northgate, Harbour, Maple, Summit, Lakeside, Greenfield, Oakwood, Westbrook, Cedar,
Ashford, Kingsley, Brightwater, Stonebridge, Elmhurst, Fairview, Millbrook, Redhill, Copperfield, Thornbury""")
_EN_ORG_B = _items("""Community Trust, Council, Institute, Cooperative, Society, Foundation, Residents' Association,
Partnership, Network, Research Group, Sports Club, Collective, Alliance, Consumer Panel""")
_EN_ROLES = _items("""a retired engineer, a local shop owner, the project coordinator, a second-year student,
a volunteer at the library, a nurse who lives nearby, a father of three, the club treasurer, a part-time gardener,
a software tester, the head teacher, a long-time resident, a freelance photographer, the site manager,
a primary school teacher, a keen amateur, the chair of the residents' association, a postgraduate researcher,
a bus driver, a café owner, the deputy mayor, an independent consultant, a regular reader of this site,
a junior doctor, a mother of two""")
_EN_CONNECTORS = _items("""However;, In addition;, Meanwhile;, As a result;, For example;, At the same time;,
On the other hand;, Even so;, In practice;, By contrast;, Later that week;, To be fair;, Not surprisingly;, In the end;,
After a while;, For now;, Until recently;, Since then;, Looking back;, In the meantime;, Despite this;, Above all;,
Once again;, Oddly enough;, With that in mind;""")
_EN_TIMES = _items("""last spring, earlier this year, over the winter, in the past few months,
during the summer holidays, at the end of {mon}, since {yr}, two weeks ago, last {day}, in early {mon},
every other {day}, over the past {num} years, before the holidays, after the storm in {mon},
for the first time in {num} years, on a rainy {day}, this autumn, late last year, within {num} days,
at the start of the season""")
_EN_QUANT = _items("""several, many, a few, dozens of, a handful of, hundreds of, most of the, some of the,
two or three, nearly all the""")
_EN_ADVERBS = _items("""carefully, quickly, slowly, gradually, quietly, regularly, eventually, immediately, patiently,
openly, briefly, seriously, happily, reluctantly, deliberately, cautiously, steadily, surprisingly, repeatedly,
properly, honestly, roughly, mostly, thoroughly""")
_EN_MONTHS = _items("""January, February, March, April, May, June, July, August, September, October, November,
December""")
_EN_DAYS = _items("Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday")
_EN_NOUNS = _items("""neighbour, volunteer, result, question, decision, budget, schedule, report, survey, meeting, plan,
problem, solution, idea, project, community/communities, family/families, weekend, morning, afternoon, evening,
deadline, photograph, conversation, newsletter, workshop, committee, charity/charities,
opportunity/opportunities, challenge, experience, habit, mistake, success, routine, checklist, comparison, estimate,
review, detail, trend, visitor, resident, customer, reader, expert, beginner, price, cost, process/processes, method,
season, lesson, story/stories, interview, update, list, rule, option""")
_EN_ADJS = _items("""simple, useful, careful, practical, popular, cheap, expensive, important, obvious, surprising,
difficult, easy, small, large, new, old, familiar, ordinary, unusual, recent, early, late, quiet, busy, regional,
national, modern, traditional, reliable, complicated, detailed, honest, clear, strong, weak, helpful, frustrating,
promising, realistic, sensible, patient, crowded, empty, fresh, tired, positive, negative, safe, gradual, sudden,
regular, occasional, awkward, elegant, fragile, generous, hopeful, nervous, ugly, handsome""")
# verbs: base/past[/participle]
_EN_VERBS = _items("""improve/improved, reduce/reduced, build/built, choose/chose/chosen, test/tested,
replace/replaced, measure/measured, track/tracked, share/shared, plan/planned, organise/organised, review/reviewed,
compare/compared, describe/described, support/supported, explain/explained, design/designed, develop/developed,
collect/collected, prepare/prepared, repair/repaired, clean/cleaned, check/checked, finish/finished,
start/started, change/changed, question/questioned, ignore/ignored, notice/noticed, discover/discovered,
sell/sold, buy/bought, find/found, keep/kept, bring/brought, try/tried, use/used, visit/visited, avoid/avoided,
praise/praised, criticise/criticised, expand/expanded, document/documented""")


@dataclass(frozen=True)
class _Topic:
    name: str
    section: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...]


def _topic(name: str, section: str, nouns: str, adjectives: str, verbs: str) -> _Topic:
    return _Topic(name, section, _items(nouns), _items(adjectives), _items(verbs))


_EN_TOPICS = (
    _topic(
        "gardening",
        "Home & Garden",
        """tomato/tomatoes, raised bed, compost heap, seedling, greenhouse, allotment, hedge, watering can,
           potato/potatoes, runner bean, soil sample, flower border, fruit tree, slug trap, herb garden, rain barrel,
           pruning saw, garden shed, rose bush, seed tray, cold frame, vegetable patch, wildflower meadow,
           bird feeder, apple tree""",
        "overgrown, drought-tolerant, organic, frost-damaged, shady, waterlogged, fertile, compact, sunny, weedy",
        """plant/planted, prune/pruned, harvest/harvested, water/watered, dig/dug, sow/sowed/sown,
           transplant/transplanted, mulch/mulched""",
    ),
    _topic(
        "cooking",
        "Food & Drink",
        """sourdough loaf/sourdough loaves, cast-iron pan, spice blend, stock pot, recipe card, lentil soup,
           chopping board, bread oven, dumpling, marinade, pastry case, tasting menu, kitchen scale, pickle jar,
           dinner party, noodle dish, farmers market, roast chicken, stew, sauce, oven tray, rice cooker,
           knife/knives, baking sheet, dessert""",
        "crispy, tender, smoky, homemade, seasonal, spicy, bland, fragrant, rich, tangy",
        """bake/baked, simmer/simmered, roast/roasted, season/seasoned, chop/chopped, whisk/whisked,
           taste/tasted, ferment/fermented""",
    ),
    _topic(
        "travel",
        "Travel",
        """night train, hostel, ferry crossing, boarding pass, guidebook, coastal path, mountain hut, rail pass,
           day trip, city tour, luggage allowance, campsite, airport lounge, walking route, border crossing,
           rental car, beach town, museum pass, travel insurance policy/travel insurance policies, youth hostel,
           harbour cruise, ski lift, viewpoint, local guide, backpack""",
        "remote, scenic, overpriced, affordable, windy, historic, peaceful, touristy, rugged, sleepy",
        """book/booked, explore/explored, pack/packed, cancel/cancelled, hike/hiked, photograph/photographed,
           recommend/recommended, reserve/reserved""",
    ),
    _topic(
        "money",
        "Money",
        """savings account, pension fund, mortgage, credit score, monthly budget, index fund, tax return,
           household bill, interest rate, emergency fund, insurance premium, utility bill, student loan, pay rise,
           spending plan, energy tariff, bank fee, retirement plan, investment portfolio, grocery bill, salary/salaries,
           receipt, loan repayment, price index/price indices, subscription""",
        "risky, fixed, variable, tax-free, unexpected, modest, steady, volatile, hidden, monthly",
        """save/saved, invest/invested, borrow/borrowed, repay/repaid, budget/budgeted, cut/cut, switch/switched,
           negotiate/negotiated""",
    ),
    _topic(
        "software",
        "Technology",
        """laptop, database, code review, web browser, password manager, backup drive, open-source library,
           text editor, cloud server, mobile app, software update, keyboard shortcut, spreadsheet, command line,
           test suite, bug report, router, smartphone, operating system, wireless network, deployment script,
           user interface, log file, memory leak, container image""",
        "buggy, lightweight, outdated, secure, open-source, fast, clunky, portable, stable, responsive",
        """install/installed, debug/debugged, update/updated, configure/configured, deploy/deployed,
           refactor/refactored, benchmark/benchmarked, migrate/migrated""",
    ),
    _topic(
        "council",
        "Local News",
        """council meeting, bus route, parking permit, library branch, planning application, school board,
           recycling centre, speed limit, public consultation, housing scheme, street light, cycle lane,
           road closure, community centre, bridge repair, town hall, budget proposal, playground, bus shelter,
           flood barrier, market square, zoning rule, ward councillor, petition, footpath""",
        "controversial, overdue, temporary, unpopular, long-awaited, costly, ambitious, public, disputed, local",
        """approve/approved, reject/rejected, fund/funded, delay/delayed, debate/debated, propose/proposed,
           reopen/reopened, inspect/inspected""",
    ),
    _topic(
        "fitness",
        "Health",
        """running shoe, training plan, yoga class, blood pressure reading, sleep schedule, rowing machine,
           stretching routine, marathon, protein shake, swimming lesson, heart rate monitor, physiotherapist,
           gym membership, walking group, knee injury, breakfast, posture, water bottle, step counter, warm-up,
           cycling class, fitness tracker, recovery day, hiking pole, meal plan""",
        "gentle, intense, healthy, sore, exhausting, balanced, beginner-friendly, sedentary, active, hydrated",
        """stretch/stretched, train/trained, jog/jogged, recover/recovered, lift/lifted, rest/rested,
           swim/swam/swum, walk/walked""",
    ),
    _topic(
        "diy",
        "Home",
        """drill bit, floorboard, window frame, paint roller, kitchen cabinet, boiler, leaking tap, skirting board,
           ladder, extension lead, loft insulation, garden fence, bathroom tile, door hinge, wall plug, workbench,
           screwdriver, radiator, shelf/shelves, plaster wall, sanding block, toolbox, light fitting, damp patch,
           staircase""",
        "sturdy, rusty, loose, uneven, draughty, durable, warped, cracked, freshly painted, wobbly",
        """sand/sanded, paint/painted, fix/fixed, drill/drilled, seal/sealed, assemble/assembled, insulate/insulated,
           varnish/varnished""",
    ),
    _topic(
        "science",
        "Science",
        """telescope, star chart, comet, eclipse, lunar crater, meteor shower, observatory, weather balloon,
           microscope, fossil, lab notebook, rock sample, research paper, satellite, night sky, planet, field study,
           data set, experiment, spectrum/spectra, sensor, galaxy, moth trap, tide gauge, soil core""",
        "faint, bright, distant, rare, precise, cloudy, ancient, tiny, measurable, puzzling",
        """observe/observed, record/recorded, analyse/analysed, publish/published, calibrate/calibrated,
           classify/classified, sample/sampled, map/mapped""",
    ),
    _topic(
        "music",
        "Culture",
        """guitar, choir rehearsal, vinyl record, drum kit, concert hall, songwriter, music festival,
           string quartet, bass line, piano lesson, setlist, record shop, jazz club, brass band, album, tour bus,
           melody, microphone, rehearsal room, open mic night, violin, chord progression, amplifier, soundcheck,
           orchestra""",
        "acoustic, loud, haunting, upbeat, experimental, melancholy, polished, raw, catchy, live",
        """rehearse/rehearsed, perform/performed, compose/composed, tune/tuned, mix/mixed, release/released,
           practise/practised, arrange/arranged""",
    ),
    _topic(
        "education",
        "Education",
        """classroom, reading list, school trip, homework assignment, exam timetable, science fair,
           teaching assistant, lecture hall, study group, library card, lunch break, parents' evening, textbook,
           essay, maths lesson, field trip, scholarship, school garden, language course, report card, timetable,
           graduation ceremony, tutor, seminar, student council""",
        "engaging, demanding, optional, well-organised, rewarding, inclusive, underfunded, hands-on, compulsory, "
        "informal",
        """teach/taught, study/studied, revise/revised, mark/marked, present/presented, discuss/discussed,
           enrol/enrolled, assess/assessed""",
    ),
    _topic(
        "wildlife",
        "Animals",
        """rescue dog, cat flap, bird table, hedgehog, aquarium, dog walker, vet appointment, bee hive,
           chicken coop, rabbit hutch, kitten, nature reserve, fox, badger, owl, pond, feeding bowl, leash,
           pet insurance policy/pet insurance policies, animal shelter, butterfly, squirrel, nest box, riverbank,
           songbird""",
        "shy, playful, noisy, curious, nocturnal, elderly, friendly, timid, wild, well-fed",
        """feed/fed, adopt/adopted, rescue/rescued, spot/spotted, groom/groomed, protect/protected, count/counted,
           release/released""",
    ),
    _topic(
        "sport",
        "Sport",
        """football pitch, cycling club, tennis court, relay team, stadium, coach, penalty kick,
           training session, changing room, season ticket, league table, climbing wall, goalkeeper, bike lane,
           match report, rowing crew, scoreboard, fan club, referee, kit sponsor, home game, trophy, race route,
           half-time talk, swimming pool""",
        "competitive, muddy, unbeaten, young, experienced, disappointing, thrilling, amateur, injured, confident",
        """win/won, lose/lost, coach/coached, score/scored, defend/defended, celebrate/celebrated,
           sponsor/sponsored, host/hosted""",
    ),
)

# English sentence templates. Slots: {P} person, {F} first name, {S} surname, {R} role, {C} city, {O} organisation,
# {n} noun, {N} plural noun ({n:1}/{N:1} reuse noun 1), {a} adjective, {v} base verb, {vs} 3rd person, {vd} past,
# {vn} participle, {adv}, {q} quantity, {c} connector, {t} time expression, {num} {big} {pct} {yr} {yr2} {mon}
# {day} {price}. Few fixed runs of five words, so distinct pages share almost no word 5-grams.
_EN_TEMPLATES = (
    "{c} {P}, {R} from {C}, said the {a} {n} had {vn} {q} {N} {t}.",
    "{F} {vd} the {n:1} {adv} and kept notes on every {n} that looked {a}.",
    "According to the {O}, about {pct} percent of {N} in {C} are now considered {a}.",
    "Most {N} need a {a} {n} and a little patience before they show any real difference.",
    "We {vd} {num} different {N} over {num} weeks, and only a few of them held up under daily use.",
    "The {a} {n} is not for everyone, but it {vs} the {n} better than anything else we tried.",
    "{c} the {N} that {F} {vd} {t} were noticeably more {a} than the ones from {C}.",
    "If you want to {v} a {n} without spending too much, start with the {a} {N} and work from there.",
    "{P} told us that the real problem was never the {n}; it was the {a} {n} behind it.",
    "There were {num} {N} on the list, and {F} {vd} each one before the {day} deadline.",
    "Nobody at the {O} expected the {n} to become so {a} so quickly.",
    "Why do so many {N} {v} the {n} when a {a} {n} would do the same job?",
    "The first time {F} tried to {v} a {n}, it took {num} hours and two trips to the shop.",
    "{c} prices for {N} in {C} have risen by roughly {pct} percent since {yr}.",
    "It is easy to forget how {a} a {n} can be until you have to {v} one yourself.",
    "{S} {vd} the {n} in {C} and asked the {O} for help with the {a} {N}.",
    "A {a} {n} and a {a} {n} are usually enough for a first attempt.",
    "{F} and a friend {vd} the {a} {n} on a {a} {day} in {mon}.",
    "The {O} says more than {big} {N} were {vn} in {C} last year alone.",
    "One {R2} described the {n} as {a}, while another called it {a} but worth the effort.",
    "{c} we {vd} the {n} against a {a} {n} and found almost no difference.",
    "You can {v} most {N} with a {a} {n}, although it helps to {v} them {adv} first.",
    "By {mon}, the {n} on {S}'s street had become the most {a} spot in the neighbourhood.",
    "The results were {a}: {pct} percent of the {N} {vd} within {num} days.",
    "Even the {a} {N} eventually needed a new {n}, which cost about {price}.",
    "{P} has spent {num} years trying to {v} {N} in and around {C}.",
    "That is why {F} now keeps a {a} {n} next to the {n} at all times.",
    "When the {n} finally arrived, it was smaller and more {a} than the photos suggested.",
    "The {a} {n} at the {O} is open to anyone who wants to {v} their own {N}.",
    "{c} the group {vd} a short guide to {a} {N} and handed out {big} copies.",
    "Some {N} are simply too {a} to {v} at home, and that is fine.",
    "{F} still remembers the {day} when the old {n} was {vn} for the last time.",
    "In {C}, the {n} has become a symbol of how {a} life in the area can be.",
    "The advice from {P} is simple: {v} the {n} {adv} and never skip the {n}.",
    "It took {num} attempts, a borrowed {n} and a lot of {a} jokes to get it right.",
    "Readers in {C} have sent us {num} photos of their {a} {N} so far.",
    "{c} it became clear that the {N} and the {n} needed to be treated separately.",
    "There is no single right way to {v} a {n}, but there are plenty of {a} ways.",
    "A survey by the {O} found that {pct} percent of people have never {vn} a {n}.",
    "{S} recommends checking the {n} every {num} days during {mon} and {mon}.",
    "Most of the {N} we tested were {a}, and two of them were surprisingly {a}.",
    "The {n} that {F} {vd} {t} is still in use today.",
    "Without a {a} {n}, even a {a} {n} quickly becomes a chore.",
    "{c} {F} decided to {v} the {N} {adv} rather than all at once.",
    "What surprised us most was how {a} the {N} were after only {num} weeks.",
    "Anyone who has tried to {v} a {n} in {mon} will know how {a} it can get.",
    "The {O} plans to {v} another {num} {N} before the end of {yr2}.",
    "For {F}, the {n} is less about the result and more about the {a} routine.",
    "Our {a} {n} cost less than {price}, which is about half the usual price.",
    "Several {N} in {C} have already {vn} the {n}, and more are expected to follow.",
    "The best {N} tend to be {a}, {a} and easy to {v}.",
    "{c} the {a} {n} turned out to be the part that everyone talked about.",
    "After {num} months, {P} said the {N} were finally starting to look {a}.",
    "You do not need a {a} {n} to {v} {N}, but a {a} {n} certainly helps.",
    "The {n} was {vn} by {P} and a small team from the {O}.",
    "Do you really need a {a} {n}, or would a {a} {n} be enough?",
    "It is worth asking whether the {n} is {a} enough before you {v} it.",
    "On a {a} {day} in {mon}, the {n} near {C} attracted more than {big} visitors.",
    "{F} admits that the first {n} was a disaster, but the second one was {a}.",
    "Experts at the {O} warn that {a} {N} can {v} the {n} faster than people expect.",
    "{c} there is the question of whether {N} should be {vn} at all.",
    "Nobody wants a {a} {n}, yet that is exactly what many {N} end up with.",
    "The {N} were {vn} {adv}, one at a time, over the course of {num} days.",
    "What started as a {a} {n} in {S}'s garage has grown into a {a} {n} with {big} members.",
    "If the {n} feels {a}, try to {v} it again after a short break!",
    "By the end of the {day}, {F} had {vn} {num} {N} and filled a {a} {n}.",
    "The difference between a {a} {n} and a {a} one usually comes down to the {n}.",
    "{c} {P} plans to {v} the {n} again next {mon}.",
    "Many readers asked us how to {v} a {n} on a tight budget, so here is what we found.",
)
_EN_TITLES = (
    "How {C} Learned to Love Its {N}",
    "{num} Things Nobody Tells You About {N}",
    "Why {a} {N} Matter More Than You Think",
    "What We Learned After {num} Weeks With a {a} {n}",
    "A Beginner's Guide to {a} {N}",
    "The {O} Announces a New Plan for {N}",
    "The Case for {a} {N} in {C}",
    "Inside the Argument Over {C}'s {N}",
    "Are {a} {N} Worth the Money?",
    "Our Honest Review of the {a} {n}",
    "{P} on {N}, {N} and Everything in Between",
    "Everything You Need to Know Before You {v} a {n}",
)
_EN_SUBHEADS = (
    "What the {N} Tell Us",
    "The {a} Part",
    "Looking Ahead",
    "Costs and Benefits",
    "How We Tested the {N}",
    "A Word About {N}",
    "What Comes Next for {C}",
    "Getting Started",
    "Common Mistakes",
    "The Verdict",
)
_EN_LIST_ITEMS = (
    "Check the {n} at least once every {num} days.",
    "Keep a {a} {n} close to the {n} at all times.",
    "Ask the {O} about {a} {N} before you buy anything.",
    "Write down what you {vd} and when you did it.",
    "Never {v} a {n} in a hurry, however {a} it looks.",
    "Budget around {price} for the {a} {N}.",
    "Talk to {F} at the {O} if the {n} starts to look {a}.",
)
_EN_COMMENTS = (
    "Great article, thanks for taking the time to write it up!",
    "I tried this last year and it worked surprisingly well for us.",
    "Does anyone know whether this also applies outside the city?",
    "Bookmarked for later, this is really helpful.",
    "I disagree with the second point, but the rest is spot on.",
    "We had exactly the same problem in our street last winter.",
)

_LOREM = _items("""lorem, ipsum, dolor, sit, amet, consectetur, adipiscing, elit, sed, do, eiusmod, tempor,
incididunt, ut, labore, et, dolore, magna, aliqua, enim, ad, minim, veniam, quis, nostrud, exercitation, ullamco,
laboris, nisi, aliquip, ex, ea, commodo, consequat, duis, aute, irure, in, reprehenderit, voluptate, velit, esse,
cillum, fugiat, nulla, pariatur, excepteur, sint, occaecat, cupidatat, non, proident, sunt, culpa, qui, officia,
deserunt, mollit, anim, id, est, laborum""")
_SPAM_KEYWORDS = (
    _items("cheap flights, last minute flights, flight deals, cheap tickets, budget airline tickets"),
    _items("car insurance quotes, cheap car insurance, best car insurance, insurance comparison, instant quote"),
    _items("payday loans, fast cash loans, instant loans online, bad credit loans, same day loans"),
    _items("replica watches, luxury watches cheap, designer watches sale, swiss watches discount, watch outlet"),
    _items("best vpn, vpn deal, cheap vpn, vpn free trial, fastest vpn"),
    _items("weight loss tips, lose weight fast, diet plan, fat burner, slimming pills"),
    _items("buy followers, instagram followers, cheap likes, grow followers fast, real followers"),
    _items("seo services, cheap seo, rank first on google, backlinks for sale, seo agency"),
)
_SPAM_FILLERS = _items("best, cheap, online, 2024, free, deals, top, buy now, discount, sale, official, guaranteed")
_LINK_TITLES = _items("""Best hiking boots 2024, Top 10 laptops under 500, Cheap hotels near the airport,
Free recipe ideas, Garden furniture sale, Used cars in your area, Home insurance compared, Wedding venues,
Kids party ideas, Learn guitar online, Mortgage calculator, Dog friendly beaches, Weekend breaks, Phone deals,
Printable calendars, Solar panels explained, Moving checklist, Job listings, Local plumbers, Online courses,
Photo editing apps, Holiday cottages, Electric bikes, Pet supplies, Coffee machines, Running shoes,
Student discounts, Flight tracker, Crossword help, Recycling guide, Train times, Parking near the station,
Cinema listings, Gift ideas for dad, Baby names, Horoscope today, Weather this week, Bus timetable,
Currency converter, Sudoku online""")
_SHORT_TEXTS = (
    "The shop will be closed on Monday for stocktaking.",
    "This page has moved, please update your bookmarks.",
    "Thank you for your message, we will reply soon.",
    "Coming soon: our new website is under construction.",
    "The event has been postponed until further notice.",
    "Registration for the spring course is now closed.",
    "Sorry, this offer is no longer available.",
    "Our office hours have changed for the summer.",
    "The results will be published here next week.",
)

_PII_SENTENCES = {
    "EMAIL_ADDRESS": (
        "Readers who want to share their own experience can write to {value} with a short description.",
        "{F} asked us to pass on the address {value} to anyone with a spare {n}.",
        "Questions about the {n} can be sent to {value} before the end of {mon}.",
    ),
    "PHONE_NUMBER": (
        "The {O} helpline is open on weekdays and can be reached on {value} between nine and five.",
        "For bookings, call {F} on {value} and leave a message if nobody answers.",
        "Anyone who has seen the missing {n} is asked to ring {value} as soon as possible.",
    ),
    "IP_ADDRESS": (
        "The logs showed that most of the failed logins came from {value} over a single weekend.",
        "{F} traced the spam messages back to a server at {value} and reported it to the host.",
        "For a while the forum was only reachable at {value}, which confused many regular readers.",
    ),
    "CREDIT_CARD": (
        "In a screenshot shared online, the card number {value} was clearly visible next to the order total.",
        "One reader said the card {value} had been charged twice for the same {n}.",
        "The leaked receipt even showed the full card number {value} along with the delivery address.",
    ),
}
_NON_PII_SENTENCES = (
    "The router's admin page lives at {value}, so you need to be on the home network to open it.",
    "Our test machine used the address {value} inside the office network, which is not reachable from outside.",
    "The printer was given the fixed address {value} on the local network.",
)


# ---------------------------------------------------------------------------------------------------------------
# Other languages: a small grammar each (nouns with gender, agreeing adjectives, verbs in three forms).


@dataclass(frozen=True)
class _Language:
    code: str
    nouns: tuple[tuple[str, str], ...]  # (word, gender)
    adjectives: tuple[tuple[str, str], ...]  # (masculine/neuter form, feminine form)
    verbs: tuple[tuple[str, str, str, str], ...]  # (3rd person, past, participle, infinitive)
    noun_form: Callable[[str, str, str], str]  # (word, gender, form) -> phrase
    templates: tuple[str, ...]
    titles: tuple[str, ...]
    first: tuple[str, ...]
    last: tuple[str, ...]
    cities: tuple[str, ...]
    connectors: tuple[str, ...]
    times: tuple[str, ...]
    months: tuple[str, ...]
    days: tuple[str, ...]


def _gendered(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((w.rsplit(" ", 1)[0], w.rsplit(" ", 1)[1]) for w in _items(text))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((p.split("/")[0], p.split("/")[-1]) for p in _items(text))


def _verbs3(text: str) -> tuple[tuple[str, str, str, str], ...]:
    out = []
    for v in _items(text):
        third, past, inf = v.split("/")
        out.append((third, past, past, inf))
    return tuple(out)


def _de_noun(word: str, gender: str, form: str) -> str:
    articles = {
        "nom": {"m": "der", "f": "die", "n": "das"},
        "acc": {"m": "den", "f": "die", "n": "das"},
        "dat": {"m": "dem", "f": "der", "n": "dem"},
        "im": {"m": "im", "f": "in der", "n": "im"},
        "zum": {"m": "zum", "f": "zur", "n": "zum"},
        "vom": {"m": "vom", "f": "von der", "n": "vom"},
    }
    return f"{articles[form or 'nom'][gender]} {word}"


def _vowel(word: str) -> bool:
    return word[:1].lower() in "aeiouyhéèêâàîôûœ"


def _fr_noun(word: str, gender: str, form: str) -> str:
    if _vowel(word):
        return {"def": "l'", "de": "de l'", "a": "à l'"}[form or "def"] + word
    if gender == "m":
        return {"def": "le ", "de": "du ", "a": "au "}[form or "def"] + word
    return {"def": "la ", "de": "de la ", "a": "à la "}[form or "def"] + word


def _es_noun(word: str, gender: str, form: str) -> str:
    if gender == "m":
        return {"def": "el ", "de": "del ", "a": "al "}[form or "def"] + word
    return {"def": "la ", "de": "de la ", "a": "a la "}[form or "def"] + word


def _it_noun(word: str, gender: str, form: str) -> str:
    if _vowel(word) and word[0] != "h":
        art = "l'"
    elif gender == "f":
        art = "la"
    elif word.startswith(("s", "z")) and len(word) > 1 and word[1] not in "aeiou":
        art = "lo"
    elif word.startswith("z"):
        art = "lo"
    else:
        art = "il"
    prep = {
        "def": {"il": "il ", "lo": "lo ", "la": "la ", "l'": "l'"},
        "di": {"il": "del ", "lo": "dello ", "la": "della ", "l'": "dell'"},
        "a": {"il": "al ", "lo": "allo ", "la": "alla ", "l'": "all'"},
        "in": {"il": "nel ", "lo": "nello ", "la": "nella ", "l'": "nell'"},
    }
    return prep[form or "def"][art] + word


def _pt_noun(word: str, gender: str, form: str) -> str:
    table = {
        "def": {"m": "o", "f": "a"},
        "de": {"m": "do", "f": "da"},
        "em": {"m": "no", "f": "na"},
        "a": {"m": "ao", "f": "à"},
    }
    return f"{table[form or 'def'][gender]} {word}"


def _nl_noun(word: str, gender: str, form: str) -> str:
    return f"{'het' if gender == 'het' else 'de'} {word}"


_LANGUAGES: dict[str, _Language] = {
    "de": _Language(
        code="de",
        nouns=_gendered("""Bahnhof m, Markt m, Verein m, Garten m, Plan m, Bericht m, Haushalt m, Wald m, Hafen m,
        Spielplatz m, Radweg m, Wettbewerb m, Vorschlag m, Kindergarten m, Sportplatz m, Friedhof m, Turm m,
        Brunnen m, Parkplatz m, Wochenmarkt m, Stadt f, Schule f, Brücke f, Straße f, Bibliothek f, Kirche f,
        Ausstellung f, Gemeinde f, Umfrage f, Bäckerei f, Feuerwehr f, Apotheke f, Baustelle f, Mannschaft f,
        Werkstatt f, Veranstaltung f, Turnhalle f, Buslinie f, Rathaus n, Museum n, Krankenhaus n, Projekt n,
        Dorf n, Konzert n, Theater n, Schwimmbad n, Stadtfest n, Gebäude n, Gymnasium n, Unternehmen n,
        Programm n, Angebot n, Stadion n, Hotel n, Restaurant n, Jugendzentrum n"""),
        adjectives=_pairs("""groß, klein, neu, alt, teuer, günstig, wichtig, beliebt, modern, laut, ruhig, voll, leer,
        bekannt, sauber, sicher, gefährlich, schwierig, einfach, notwendig, umstritten, erfolgreich, geschlossen,
        überfüllt, marode, veraltet"""),
        verbs=_verbs3("""besucht/besucht/besuchen, plant/geplant/planen, kritisiert/kritisiert/kritisieren,
        unterstützt/unterstützt/unterstützen, renoviert/renoviert/renovieren, eröffnet/eröffnet/eröffnen,
        prüft/geprüft/prüfen, beschreibt/beschrieben/beschreiben, organisiert/organisiert/organisieren,
        verbessert/verbessert/verbessern, finanziert/finanziert/finanzieren, lobt/gelobt/loben,
        sucht/gesucht/suchen, baut/gebaut/bauen, zeigt/gezeigt/zeigen, braucht/gebraucht/brauchen,
        verkauft/verkauft/verkaufen, besichtigt/besichtigt/besichtigen, fordert/gefordert/fordern,
        erweitert/erweitert/erweitern"""),
        noun_form=_de_noun,
        templates=(
            "{P} {v} {n:1:acc} {t}.",
            "{c} {v} {P} {n:1:acc} in {C}.",
            "Nach Angaben der Stadt {C} ist {n:1:nom} derzeit {a:1}.",
            "Viele Bürger sagen, dass {n:1:nom} viel zu {a:1} ist.",
            "Im vergangenen Jahr kamen mehr als {big} Besucher {n:1:zum}.",
            "{P} erklärt, dass man {n:1:acc} nicht ohne {n:2:acc} {vi} kann.",
            "Wir haben {n:1:acc} {t} {vn}, und das Ergebnis war überraschend gut.",
            "Die Stadt {C} will {n:1:acc} bis {yr2} {vi}, aber die Kosten sind noch unklar.",
            "Die Kosten für {n:1:acc} liegen nach ersten Schätzungen bei rund {big} Euro.",
            "Warum {v} {P} {n:1:acc} erst jetzt?",
            "Für viele Familien in {C} ist {n:1:nom} besonders {a:1}.",
            "Auch {n:1:nom} soll im nächsten Jahr {vn} werden.",
            "Nach Meinung von {P} gibt es in {C} zu wenig Geld für {n:1:acc}.",
            "{P} wohnt seit {num} Jahren in {C} und kennt {n:1:acc} sehr gut.",
            "Am Wochenende {v} {P} gemeinsam mit {num} Freiwilligen {n:1:acc}.",
            "Bei einem Treffen {n:1:im} wurde lange über {n:2:acc} diskutiert.",
            "{n:1:nom} war schon vor {num} Jahren {a:1}, sagt {P}.",
            "Laut einer Umfrage finden {pct} Prozent der Einwohner {n:1:acc} zu {a:1}.",
            "{P} hat {n:1:acc} {t} {vn} und ist mit dem Ergebnis zufrieden.",
            "Ob {n:1:nom} wirklich {a:1} ist, will der Gemeinderat im {mon} entscheiden.",
            "Die Besucher {n:1:vom} waren begeistert, doch {n:2:nom} blieb {a:2}.",
            "Seit {yr} {v} der Verein jedes Jahr {n:1:acc} und {n:2:acc}.",
            "Es ist nicht das erste Mal, dass {n:1:nom} in {C} für Diskussionen sorgt.",
            "{P} und {P} wollen {n:1:acc} noch in diesem Jahr {vi}.",
        ),
        titles=(
            "{C}: Neue Pläne für {n:1:acc}",
            "Streit um {n:1:acc} in {C}",
            "Was sich {yr2} {n:1:im} ändert",
            "{P} über {n:1:acc} und {n:2:acc}",
        ),
        first=_items("""Anna, Lukas, Marie, Jonas, Sophie, Felix, Laura, Paul, Lena, Maximilian, Julia, Tobias,
        Katharina, Stefan, Sabine, Jürgen, Monika, Andreas, Claudia, Markus"""),
        last=_items("""Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, Hoffmann, Koch,
        Richter, Klein, Wolf, Neumann, Schwarz, Zimmermann, Braun, Krüger, Hartmann"""),
        cities=_items("""Freiburg, Münster, Regensburg, Kassel, Lübeck, Erfurt, Göttingen, Bamberg, Heidelberg, Rostock,
        Ulm, Trier, Konstanz, Passau, Potsdam"""),
        connectors=_items("Außerdem, Trotzdem, Inzwischen, Deshalb, Allerdings, Zudem, Dennoch, Seitdem, Schließlich"),
        times=_items("""am {day}, im {mon}, seit {yr}, letzte Woche, im vergangenen Sommer, vor {num} Jahren,
        jedes Jahr, am Wochenende, Ende {mon}, Anfang {yr2}"""),
        months=_items("Januar, Februar, März, April, Mai, Juni, Juli, August, September, Oktober, November, Dezember"),
        days=_items("Montag, Dienstag, Mittwoch, Donnerstag, Freitag, Samstag, Sonntag"),
    ),
    "fr": _Language(
        code="fr",
        nouns=_gendered("""ville f, école f, mairie f, bibliothèque f, église f, place f, rue f, gare f, piscine f,
        association f, entreprise f, exposition f, réunion f, boulangerie f, pharmacie f, région f, route f,
        équipe f, fête f, usine f, salle f, crèche f, marché m, musée m, hôpital m, quartier m, parc m, projet m,
        village m, théâtre m, stade m, concert m, festival m, jardin m, pont m, budget m, restaurant m, hôtel m,
        collège m, chantier m, conseil m, port m, cinéma m, lycée m"""),
        adjectives=_pairs("""grand/grande, petit/petite, ancien/ancienne, important/importante, cher/chère, moderne,
        célèbre, calme, bruyant/bruyante, fermé/fermée, ouvert/ouverte, plein/pleine, populaire,
        dangereux/dangereuse, nécessaire, rénové/rénovée, propre, sûr/sûre, coûteux/coûteuse, accessible, difficile,
        animé/animée, vétuste, fréquenté/fréquentée"""),
        verbs=_verbs3("""visite/visité/visiter, présente/présenté/présenter, critique/critiqué/critiquer,
        soutient/soutenu/soutenir, rénove/rénové/rénover, ouvre/ouvert/ouvrir, organise/organisé/organiser,
        finance/financé/financer, décrit/décrit/décrire, améliore/amélioré/améliorer, construit/construit/construire,
        cherche/cherché/chercher, montre/montré/montrer, vend/vendu/vendre, prépare/préparé/préparer,
        défend/défendu/défendre, découvre/découvert/découvrir, agrandit/agrandi/agrandir"""),
        noun_form=_fr_noun,
        templates=(
            "{c}, {P} {v} {n:1:def} de {C} {t}.",
            "Selon {P}, {n:1:def} est {a:1} depuis {yr}.",
            "Les habitants de {C} disent que {n:1:def} est beaucoup trop {a:1}.",
            "L'année dernière, plus de {big} visiteurs sont venus {n:1:a}.",
            "{P} a {vn} {n:1:def} avec {num} bénévoles pendant le week-end.",
            "La mairie de {C} veut {vi} {n:1:def} avant {yr2}, mais le budget n'est pas encore fixé.",
            "Le coût {n:1:de} est estimé à environ {big} euros.",
            "Pourquoi est-ce que {P} {v} {n:1:def} seulement maintenant ?",
            "Pour beaucoup de familles de {C}, {n:1:def} reste {a:1} et très utile.",
            "{n:1:def} restera {a:1} jusqu'au {dom} {mon}, selon {P}.",
            "Il y a {num} ans, {n:1:def} était déjà {a:1}, explique {P}.",
            "Nous avons {vn} {n:1:def} {t}, et le résultat était plutôt surprenant.",
            "{P} habite à {C} depuis {num} ans et connaît très bien {n:1:def}.",
            "Il n'y a pas assez d'argent pour {n:1:def} et {n:2:def}, selon {P}.",
            "D'après le conseil municipal, {n:1:def} doit devenir plus {a:1} d'ici la fin de l'année.",
            "Lors d'une réunion {n:1:a}, les élus ont longuement parlé {n:2:de}.",
            "Selon un sondage, {pct} pour cent des habitants trouvent {n:1:def} trop {a:1}.",
            "{P} a {vn} {n:1:def} {t} et se dit satisfait du résultat.",
            "Depuis {yr}, l'association {v} chaque année {n:1:def} et {n:2:def}.",
            "Ce n'est pas la première fois que {n:1:def} de {C} fait débat.",
            "{P} et {P} veulent {vi} {n:1:def} avant la fin de l'année.",
            "Les visiteurs {n:1:de} étaient ravis, mais {n:2:def} semblait {a:2}.",
        ),
        titles=(
            "Un nouveau projet pour {n:1:def} de {C}",
            "{C} : le débat autour {n:1:de} continue",
            "{P} présente ses idées pour {n:1:def}",
            "Ce qui change en {yr2} pour {n:1:def}",
        ),
        first=_items("""Camille, Louis, Chloé, Hugo, Léa, Julien, Manon, Antoine, Sarah, Nicolas, Émilie, Thomas,
        Claire, Mathieu, Sophie, Pierre, Isabelle, Vincent, Céline, Olivier"""),
        last=_items("""Martin, Bernard, Dubois, Robert, Richard, Petit, Durand, Leroy, Moreau, Simon, Laurent, Lefèvre,
        Michel, Garcia, David, Bertrand, Roux, Vincent, Fournier, Girard"""),
        cities=_items("""Lyon, Nantes, Rennes, Grenoble, Dijon, Angers, Tours, Annecy, Besançon, Poitiers, Limoges,
        Amiens, Caen, Perpignan, Brest"""),
        connectors=_items("Par ailleurs, Pourtant, En revanche, Ensuite, Cependant, En outre, Finalement, Entre-temps"),
        times=_items("""le {day}, en {mon}, depuis {yr}, la semaine dernière, l'été dernier, il y a {num} ans,
        chaque année, ce week-end, fin {mon}, début {yr2}"""),
        months=_items(
            "janvier, février, mars, avril, mai, juin, juillet, août, septembre, octobre, novembre, décembre"
        ),
        days=_items("lundi, mardi, mercredi, jeudi, vendredi, samedi, dimanche"),
    ),
    "es": _Language(
        code="es",
        nouns=_gendered("""ciudad f, escuela f, biblioteca f, iglesia f, plaza f, calle f, estación f, piscina f,
        asociación f, empresa f, exposición f, reunión f, panadería f, farmacia f, región f, carretera f, feria f,
        fábrica f, playa f, universidad f, guardería f, mercado m, museo m, hospital m, barrio m, parque m,
        proyecto m, pueblo m, teatro m, estadio m, concierto m, festival m, jardín m, puente m, presupuesto m,
        restaurante m, hotel m, colegio m, ayuntamiento m, puerto m, centro m, polideportivo m"""),
        adjectives=_pairs("""grande, pequeño/pequeña, nuevo/nueva, antiguo/antigua, importante, caro/cara,
        moderno/moderna, famoso/famosa, tranquilo/tranquila, ruidoso/ruidosa, popular, peligroso/peligrosa,
        necesario/necesaria, seguro/segura, accesible, difícil, conocido/conocida, barato/barata, bonito/bonita, útil,
        céntrico/céntrica"""),
        verbs=_verbs3("""visita/visitado/visitar, presenta/presentado/presentar, critica/criticado/criticar,
        apoya/apoyado/apoyar, renueva/renovado/renovar, abre/abierto/abrir, organiza/organizado/organizar,
        financia/financiado/financiar, describe/descrito/describir, mejora/mejorado/mejorar,
        construye/construido/construir, busca/buscado/buscar, muestra/mostrado/mostrar, vende/vendido/vender,
        prepara/preparado/preparar, defiende/defendido/defender, descubre/descubierto/descubrir,
        amplía/ampliado/ampliar"""),
        noun_form=_es_noun,
        templates=(
            "{c}, {P} {v} {n:1:def} de {C} {t}.",
            "Según {P}, {n:1:def} es {a:1} desde {yr}.",
            "Los vecinos de {C} dicen que {n:1:def} es demasiado {a:1}.",
            "El año pasado, más de {big} visitantes acudieron {n:1:a}.",
            "{P} ha {vn} {n:1:def} con {num} voluntarios durante el fin de semana.",
            "El ayuntamiento de {C} quiere {vi} {n:1:def} antes de {yr2}, pero el presupuesto todavía no está claro.",
            "El coste {n:1:de} se calcula en unos {big} euros.",
            "¿Por qué {v} {P} {n:1:def} solo ahora?",
            "Para muchas familias de {C}, {n:1:def} sigue siendo {a:1} y muy útil.",
            "{n:1:def} seguirá siendo {a:1} hasta el {dom} de {mon}, según {P}.",
            "Hace {num} años, {n:1:def} ya era {a:1}, explica {P}.",
            "Hemos {vn} {n:1:def} {t}, y el resultado fue bastante sorprendente.",
            "{P} vive en {C} desde hace {num} años y conoce muy bien {n:1:def}.",
            "No hay suficiente dinero para {n:1:def} y {n:2:def}, según {P}.",
            "Según el pleno municipal, {n:1:def} debe ser más {a:1} antes de que termine el año.",
            "Durante una reunión en {n:1:def}, los concejales hablaron mucho {n:2:de}.",
            "Según una encuesta, el {pct} por ciento de los vecinos cree que {n:1:def} es {a:1}.",
            "{P} ha {vn} {n:1:def} {t} y está contento con el resultado.",
            "Desde {yr}, la asociación {v} cada año {n:1:def} y {n:2:def}.",
            "No es la primera vez que {n:1:def} de {C} genera polémica.",
            "{P} y {P} quieren {vi} {n:1:def} antes de que acabe el año.",
            "Los visitantes {n:1:de} quedaron encantados, aunque {n:2:def} parecía {a:2}.",
        ),
        titles=(
            "Un nuevo proyecto para {n:1:def} de {C}",
            "Polémica en {C} por {n:1:def}",
            "{P} presenta sus ideas para {n:1:def}",
            "Lo que cambia en {yr2} para {n:1:def}",
        ),
        first=_items("""Lucía, Hugo, Martina, Pablo, Sofía, Daniel, Paula, Alejandro, Carmen, Javier, Elena, Sergio,
        Laura, Diego, Marta, Antonio, Isabel, Manuel, Cristina, Raúl"""),
        last=_items("""García, Fernández, González, Rodríguez, López, Martínez, Sánchez, Pérez, Gómez, Martín, Jiménez,
        Ruiz, Hernández, Díaz, Moreno, Álvarez, Romero, Navarro, Torres, Domínguez"""),
        cities=_items("""Valencia, Sevilla, Zaragoza, Málaga, Bilbao, Granada, Salamanca, Córdoba, Valladolid, Oviedo,
        Cádiz, Toledo, Burgos, Alicante, Pamplona"""),
        connectors=_items("""Además, Sin embargo, Por otra parte, Mientras tanto, Por eso, En cambio, Por último,
        De hecho"""),
        times=_items("""el {day}, en {mon}, desde {yr}, la semana pasada, el verano pasado, hace {num} años,
        cada año, este fin de semana, a finales de {mon}, a principios de {yr2}"""),
        months=_items(
            "enero, febrero, marzo, abril, mayo, junio, julio, agosto, septiembre, octubre, noviembre, diciembre"
        ),
        days=_items("lunes, martes, miércoles, jueves, viernes, sábado, domingo"),
    ),
    "it": _Language(
        code="it",
        nouns=_gendered("""città f, scuola f, biblioteca f, chiesa f, piazza f, strada f, stazione f, piscina f,
        associazione f, azienda f, mostra f, riunione f, panetteria f, farmacia f, regione f, fiera f, fabbrica f,
        spiaggia f, università f, palestra f, mercato m, museo m, ospedale m, quartiere m, parco m, progetto m,
        paese m, teatro m, stadio m, concerto m, giardino m, ponte m, bilancio m, ristorante m, albergo m,
        comune m, porto m, centro m, spettacolo m, cantiere m, asilo m"""),
        adjectives=_pairs("""grande, piccolo/piccola, nuovo/nuova, antico/antica, importante, caro/cara,
        moderno/moderna, famoso/famosa, tranquillo/tranquilla, rumoroso/rumorosa, popolare, pericoloso/pericolosa,
        necessario/necessaria, sicuro/sicura, accessibile, difficile, conosciuto/conosciuta, economico/economica,
        bello/bella, utile, affollato/affollata"""),
        verbs=_verbs3("""visita/visitato/visitare, presenta/presentato/presentare, critica/criticato/criticare,
        sostiene/sostenuto/sostenere, rinnova/rinnovato/rinnovare, apre/aperto/aprire,
        organizza/organizzato/organizzare,
        finanzia/finanziato/finanziare, descrive/descritto/descrivere, migliora/migliorato/migliorare,
        costruisce/costruito/costruire, cerca/cercato/cercare, mostra/mostrato/mostrare, vende/venduto/vendere,
        prepara/preparato/preparare, difende/difeso/difendere, scopre/scoperto/scoprire,
        controlla/controllato/controllare"""),
        noun_form=_it_noun,
        templates=(
            "{c}, {P} {v} {n:1:def} di {C} {t}.",
            "Secondo {P}, {n:1:def} è {a:1} dal {yr}.",
            "Gli abitanti di {C} dicono che {n:1:def} è troppo {a:1}.",
            "L'anno scorso più di {big} visitatori sono andati {n:1:a}.",
            "{P} ha {vn} {n:1:def} con {num} volontari durante il fine settimana.",
            "Il comune di {C} vuole {vi} {n:1:def} entro il {yr2}, ma il bilancio non è ancora chiaro.",
            "Il costo {n:1:di} è stimato in circa {big} euro.",
            "Perché {P} {v} {n:1:def} solo adesso?",
            "Per molte famiglie di {C}, {n:1:def} resta {a:1} e molto utile.",
            "{n:1:def} resterà {a:1} fino al {dom} {mon}, secondo {P}.",
            "{num} anni fa {n:1:def} era già {a:1}, spiega {P}.",
            "Abbiamo {vn} {n:1:def} {t}, e il risultato è stato piuttosto sorprendente.",
            "{P} vive a {C} da {num} anni e conosce molto bene {n:1:def}.",
            "Non ci sono abbastanza soldi per {n:1:def} e per {n:2:def}, secondo {P}.",
            "Secondo il consiglio comunale, {n:1:def} deve diventare più {a:1} entro la fine dell'anno.",
            "Durante una riunione {n:1:in}, i consiglieri hanno discusso a lungo {n:2:di}.",
            "Secondo un sondaggio, il {pct} per cento dei residenti trova {n:1:def} troppo {a:1}.",
            "{P} ha {vn} {n:1:def} {t} ed è soddisfatto del risultato.",
            "Dal {yr} l'associazione {v} ogni anno {n:1:def} e {n:2:def}.",
            "Non è la prima volta che {n:1:def} di {C} fa discutere.",
            "{P} e {P} vogliono {vi} {n:1:def} prima della fine dell'anno.",
            "I visitatori {n:1:di} erano entusiasti, anche se {n:2:def} sembrava {a:2}.",
        ),
        titles=(
            "Un nuovo progetto per {n:1:def} di {C}",
            "Polemica a {C} per {n:1:def}",
            "{P} presenta le sue idee per {n:1:def}",
            "Cosa cambia nel {yr2} per {n:1:def}",
        ),
        first=_items("""Giulia, Marco, Francesca, Luca, Chiara, Andrea, Sara, Matteo, Elena, Alessandro, Valentina,
        Davide, Federica, Simone, Martina, Giorgio, Paola, Stefano, Silvia, Roberto"""),
        last=_items("""Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, Bruno, Gallo,
        Conti, De Luca, Mancini, Costa, Giordano, Rizzo, Lombardi, Moretti"""),
        cities=_items("""Bologna, Torino, Verona, Padova, Firenze, Genova, Bergamo, Parma, Trieste, Lecce, Perugia,
        Modena, Trento, Pisa, Siena"""),
        connectors=_items("Inoltre, Tuttavia, D'altra parte, Nel frattempo, Per questo, Invece, Infine, In effetti"),
        times=_items("""{day} scorso, a {mon}, dal {yr}, la settimana scorsa, l'estate scorsa, {num} anni fa,
        ogni anno, questo fine settimana, alla fine di {mon}, all'inizio del {yr2}"""),
        months=_items(
            "gennaio, febbraio, marzo, aprile, maggio, giugno, luglio, agosto, settembre, ottobre, novembre, dicembre"
        ),
        days=_items("lunedì, martedì, mercoledì, giovedì, venerdì, sabato"),
    ),
    "pt": _Language(
        code="pt",
        nouns=_gendered("""cidade f, escola f, biblioteca f, igreja f, praça f, rua f, estação f, piscina f,
        associação f, empresa f, exposição f, reunião f, padaria f, farmácia f, região f, estrada f, feira f,
        fábrica f, praia f, universidade f, ponte f, creche f, mercado m, museu m, hospital m, bairro m, parque m,
        projeto m, teatro m, estádio m, concerto m, festival m, jardim m, orçamento m, restaurante m, hotel m,
        colégio m, porto m, centro m, prédio m, município m, pavilhão m"""),
        adjectives=_pairs("""grande, pequeno/pequena, novo/nova, antigo/antiga, importante, caro/cara,
        moderno/moderna, famoso/famosa, tranquilo/tranquila, barulhento/barulhenta, popular, perigoso/perigosa,
        necessário/necessária, seguro/segura, acessível, difícil, conhecido/conhecida, barato/barata, bonito/bonita,
        útil, movimentado/movimentada"""),
        verbs=_verbs3("""visita/visitou/visitar, apresenta/apresentou/apresentar, critica/criticou/criticar,
        apoia/apoiou/apoiar, renova/renovou/renovar, abre/abriu/abrir, organiza/organizou/organizar,
        financia/financiou/financiar, descreve/descreveu/descrever, melhora/melhorou/melhorar,
        constrói/construiu/construir, procura/procurou/procurar, mostra/mostrou/mostrar, vende/vendeu/vender,
        prepara/preparou/preparar, defende/defendeu/defender, descobre/descobriu/descobrir, amplia/ampliou/ampliar"""),
        noun_form=_pt_noun,
        templates=(
            "{c}, {P} {v} {n:1:def} de {C} {t}.",
            "Segundo {P}, {n:1:def} é {a:1} desde {yr}.",
            "Os moradores de {C} dizem que {n:1:def} é demasiado {a:1}.",
            "No ano passado, mais de {big} visitantes foram {n:1:a}.",
            "{P} {vn} {n:1:def} com {num} voluntários durante o fim de semana.",
            "A câmara municipal de {C} quer {vi} {n:1:def} antes de {yr2}, mas o orçamento ainda não está definido.",
            "O custo {n:1:de} está estimado em cerca de {big} euros.",
            "Porque é que {P} {v} {n:1:def} só agora?",
            "Para muitas famílias de {C}, {n:1:def} continua a ser {a:1} e muito útil.",
            "{n:1:def} vai continuar {a:1} até {dom} de {mon}, segundo {P}.",
            "Há {num} anos, {n:1:def} já era {a:1}, explica {P}.",
            "A equipa {vn} {n:1:def} {t}, e o resultado foi bastante surpreendente.",
            "{P} vive em {C} há {num} anos e conhece muito bem {n:1:def}.",
            "Não há dinheiro suficiente para {n:1:def} e {n:2:def}, segundo {P}.",
            "Segundo a assembleia municipal, {n:1:def} tem de ser mais {a:1} até ao fim do ano.",
            "Durante uma reunião {n:1:em}, os vereadores discutiram longamente o futuro {n:2:de}.",
            "Segundo um inquérito, {pct} por cento dos moradores acham que {n:1:def} é {a:1}.",
            "{P} {vn} {n:1:def} {t} e está satisfeito com o resultado.",
            "Desde {yr}, a associação {v} todos os anos {n:1:def} e {n:2:def}.",
            "Não é a primeira vez que {n:1:def} de {C} dá que falar.",
            "{P} e {P} querem {vi} {n:1:def} ainda este ano.",
            "Os visitantes {n:1:de} ficaram encantados, mas {n:2:def} parecia {a:2}.",
        ),
        titles=(
            "Novo projeto para {n:1:def} de {C}",
            "Polémica em {C} por causa {n:1:de}",
            "{P} apresenta ideias para {n:1:def}",
            "O que muda em {yr2} para {n:1:def}",
        ),
        first=_items("""João, Maria, Pedro, Ana, Tiago, Beatriz, Miguel, Inês, Rui, Catarina, Luís, Sofia, André, Marta,
        Ricardo, Teresa, Paulo, Helena, Nuno, Carla"""),
        last=_items("""Silva, Santos, Ferreira, Pereira, Oliveira, Costa, Rodrigues, Martins, Jesus, Sousa, Fernandes,
        Gonçalves, Gomes, Lopes, Marques, Alves, Almeida, Ribeiro, Pinto, Carvalho"""),
        cities=_items("""Braga, Coimbra, Aveiro, Évora, Faro, Viseu, Guimarães, Setúbal, Leiria, Porto, Funchal, Tavira,
        Viana do Castelo, Covilhã, Beja"""),
        connectors=_items("""Além disso, No entanto, Por outro lado, Entretanto, Por isso, Em contrapartida, Por fim,
        De facto"""),
        times=_items("""em {mon}, desde {yr}, na semana passada, no verão passado, há {num} anos, todos os anos,
        este fim de semana, no final de {mon}, no início de {yr2}"""),
        months=_items(
            "janeiro, fevereiro, março, abril, maio, junho, julho, agosto, setembro, outubro, novembro, dezembro"
        ),
        days=_items("sábado, domingo"),
    ),
    "nl": _Language(
        code="nl",
        nouns=_gendered("""stad de, school de, bibliotheek de, kerk de, straat de, markt de, brug de, gemeente de,
        vereniging de, tentoonstelling de, vergadering de, bakkerij de, apotheek de, haven de, wijk de,
        fietsroute de, speeltuin de, begroting de, brandweer de, sporthal de, kermis de, stadhuis het, museum het,
        ziekenhuis het, project het, dorp het, concert het, theater het, zwembad het, festival het, gebouw het,
        station het, park het, plein het, bedrijf het, programma het, hotel het, restaurant het, onderzoek het,
        buurthuis het, gemeentehuis het"""),
        adjectives=_pairs("""groot, klein, nieuw, oud, duur, goedkoop, belangrijk, populair, modern, druk, rustig, vol,
        leeg, bekend, schoon, veilig, gevaarlijk, moeilijk, eenvoudig, nodig, omstreden, succesvol, gesloten,
        verouderd"""),
        verbs=_verbs3("""bezoekt/bezocht/bezoeken, plant/gepland/plannen, bekritiseert/bekritiseerd/bekritiseren,
        steunt/gesteund/steunen, renoveert/gerenoveerd/renoveren, opent/geopend/openen,
        organiseert/georganiseerd/organiseren, financiert/gefinancierd/financieren, beschrijft/beschreven/beschrijven,
        verbetert/verbeterd/verbeteren, bouwt/gebouwd/bouwen, zoekt/gezocht/zoeken, toont/getoond/tonen,
        verkoopt/verkocht/verkopen, controleert/gecontroleerd/controleren, onderzoekt/onderzocht/onderzoeken,
        bespreekt/besproken/bespreken, uitbreidt/uitgebreid/uitbreiden"""),
        noun_form=_nl_noun,
        templates=(
            "{P} {v} {n:1:def} {t}.",
            "{c} {v} {P} {n:1:def} in {C}.",
            "Volgens de gemeente {C} is {n:1:def} op dit moment {a:1}.",
            "Veel inwoners zeggen dat {n:1:def} veel te {a:1} is.",
            "Vorig jaar kwamen er meer dan {big} bezoekers naar {n:1:def}.",
            "{P} legt uit dat je {n:1:def} niet zonder {n:2:def} kunt {vi}.",
            "Wij hebben {n:1:def} {t} {vn}, en het resultaat was verrassend goed.",
            "De gemeente {C} wil {n:1:def} voor {yr2} {vi}, maar de kosten zijn nog onduidelijk.",
            "De kosten voor {n:1:def} liggen volgens de eerste schattingen rond {big} euro.",
            "Waarom {v} {P} {n:1:def} pas nu?",
            "Voor veel gezinnen in {C} is {n:1:def} erg {a:1}.",
            "Ook {n:1:def} moet volgend jaar worden {vn}.",
            "Volgens {P} is er in {C} te weinig geld voor {n:1:def}.",
            "{P} woont al {num} jaar in {C} en kent {n:1:def} heel goed.",
            "In het weekend {v} {P} samen met {num} vrijwilligers {n:1:def}.",
            "Tijdens een vergadering in {n:1:def} werd lang gesproken over {n:2:def}.",
            "{n:1:def} was {num} jaar geleden al {a:1}, zegt {P}.",
            "Volgens een enquête vindt {pct} procent van de inwoners {n:1:def} te {a:1}.",
            "{P} heeft {n:1:def} {t} {vn} en is tevreden met het resultaat.",
            "Of {n:1:def} echt {a:1} is, beslist de gemeenteraad in {mon}.",
            "Sinds {yr} {v} de vereniging elk jaar {n:1:def} en {n:2:def}.",
            "Het is niet de eerste keer dat {n:1:def} in {C} voor discussie zorgt.",
            "{P} en {P} willen {n:1:def} nog dit jaar {vi}.",
        ),
        titles=(
            "Nieuw plan voor {n:1:def} in {C}",
            "Discussie in {C} over {n:1:def}",
            "{P} presenteert ideeën voor {n:1:def}",
            "Wat er in {yr2} verandert voor {n:1:def}",
        ),
        first=_items("""Daan, Emma, Sem, Julia, Lucas, Sophie, Milan, Tess, Thijs, Anouk, Bram, Fleur, Jeroen, Sanne,
        Pieter, Lotte, Ruben, Eva, Koen, Maaike"""),
        last=_items("""de Jong, Jansen, de Vries, van den Berg, van Dijk, Bakker, Janssen, Visser, Smit, Meijer,
        de Boer, Mulder, de Groot, Bos, Vos, Peters, Hendriks, van Leeuwen, Dekker, Brouwer"""),
        cities=_items("""Utrecht, Groningen, Leiden, Haarlem, Delft, Zwolle, Nijmegen, Maastricht, Breda, Arnhem,
        Deventer, Alkmaar, Amersfoort, Tilburg, Gouda"""),
        connectors=_items("Daarnaast, Toch, Inmiddels, Daarom, Bovendien, Ondertussen, Uiteindelijk, Sindsdien"),
        times=_items("""op {day}, in {mon}, sinds {yr}, vorige week, afgelopen zomer, {num} jaar geleden, elk jaar,
        dit weekend, eind {mon}, begin {yr2}"""),
        months=_items(
            "januari, februari, maart, april, mei, juni, juli, augustus, september, oktober, november, december"
        ),
        days=_items("maandag, dinsdag, woensdag, donderdag, vrijdag, zaterdag, zondag"),
    ),
}

# Boilerplate per language: nav labels, cookie banner, sidebar headings, footer.
_CHROME: dict[str, dict[str, Any]] = {
    "en": {
        "nav": ("Home", "News", "Reviews", "Guides", "Opinion", "About", "Contact"),
        "cookie": "We use cookies to personalise content and ads, to provide social media features and to analyse "
        "our traffic. By clicking “Accept all”, you agree to the use of cookies as described in our Cookie Policy.",
        "accept": "Accept all",
        "reject": "Reject",
        "settings": "Manage preferences",
        "related": "Related articles",
        "popular": "Popular",
        "newsletter": "Newsletter",
        "newsletter_text": "Get our best stories in your inbox every Friday. No spam, unsubscribe at any time.",
        "subscribe": "Subscribe",
        "rights": "All rights reserved.",
        "privacy": "Privacy Policy",
        "terms": "Terms of Use",
        "about": "About us",
        "contact": "Contact",
        "by": "By",
        "share": "Share this article",
        "search": "Search",
        "comments": "comments",
        "reply": "Reply",
    },
    "de": {
        "nav": ("Startseite", "Nachrichten", "Lokales", "Kultur", "Sport", "Über uns", "Kontakt"),
        "cookie": "Wir verwenden Cookies, um Inhalte und Anzeigen zu personalisieren und die Zugriffe auf unsere "
        "Website zu analysieren. Mit „Alle akzeptieren“ stimmen Sie der Verwendung von Cookies zu.",
        "accept": "Alle akzeptieren",
        "reject": "Ablehnen",
        "settings": "Einstellungen",
        "related": "Ähnliche Artikel",
        "popular": "Meistgelesen",
        "newsletter": "Newsletter",
        "newsletter_text": "Die wichtigsten Nachrichten jeden Morgen in Ihrem Postfach.",
        "subscribe": "Abonnieren",
        "rights": "Alle Rechte vorbehalten.",
        "privacy": "Datenschutz",
        "terms": "Impressum",
        "about": "Über uns",
        "contact": "Kontakt",
        "by": "Von",
        "share": "Artikel teilen",
        "search": "Suche",
        "comments": "Kommentare",
        "reply": "Antworten",
    },
    "fr": {
        "nav": ("Accueil", "Actualités", "Région", "Culture", "Sport", "À propos", "Contact"),
        "cookie": "Nous utilisons des cookies pour personnaliser le contenu et les annonces et pour analyser notre "
        "trafic. En cliquant sur « Tout accepter », vous acceptez l'utilisation des cookies.",
        "accept": "Tout accepter",
        "reject": "Refuser",
        "settings": "Paramètres",
        "related": "Articles similaires",
        "popular": "Les plus lus",
        "newsletter": "Newsletter",
        "newsletter_text": "Recevez l'essentiel de l'actualité chaque matin.",
        "subscribe": "S'abonner",
        "rights": "Tous droits réservés.",
        "privacy": "Politique de confidentialité",
        "terms": "Mentions légales",
        "about": "À propos",
        "contact": "Contact",
        "by": "Par",
        "share": "Partager l'article",
        "search": "Rechercher",
        "comments": "commentaires",
        "reply": "Répondre",
    },
    "es": {
        "nav": ("Inicio", "Noticias", "Local", "Cultura", "Deportes", "Quiénes somos", "Contacto"),
        "cookie": "Utilizamos cookies propias y de terceros para personalizar el contenido y analizar el tráfico. "
        "Al hacer clic en «Aceptar todo» acepta el uso de cookies.",
        "accept": "Aceptar todo",
        "reject": "Rechazar",
        "settings": "Configurar",
        "related": "Artículos relacionados",
        "popular": "Lo más leído",
        "newsletter": "Boletín",
        "newsletter_text": "Recibe las noticias más importantes cada mañana.",
        "subscribe": "Suscribirse",
        "rights": "Todos los derechos reservados.",
        "privacy": "Política de privacidad",
        "terms": "Aviso legal",
        "about": "Quiénes somos",
        "contact": "Contacto",
        "by": "Por",
        "share": "Compartir",
        "search": "Buscar",
        "comments": "comentarios",
        "reply": "Responder",
    },
    "it": {
        "nav": ("Home", "Notizie", "Cronaca", "Cultura", "Sport", "Chi siamo", "Contatti"),
        "cookie": "Utilizziamo i cookie per personalizzare contenuti e annunci e per analizzare il nostro traffico. "
        "Cliccando su «Accetta tutto» acconsenti all'uso dei cookie.",
        "accept": "Accetta tutto",
        "reject": "Rifiuta",
        "settings": "Impostazioni",
        "related": "Articoli correlati",
        "popular": "I più letti",
        "newsletter": "Newsletter",
        "newsletter_text": "Ricevi ogni mattina le notizie più importanti.",
        "subscribe": "Iscriviti",
        "rights": "Tutti i diritti riservati.",
        "privacy": "Informativa sulla privacy",
        "terms": "Note legali",
        "about": "Chi siamo",
        "contact": "Contatti",
        "by": "Di",
        "share": "Condividi",
        "search": "Cerca",
        "comments": "commenti",
        "reply": "Rispondi",
    },
    "pt": {
        "nav": ("Início", "Notícias", "Região", "Cultura", "Desporto", "Sobre nós", "Contactos"),
        "cookie": "Utilizamos cookies para personalizar conteúdos e anúncios e para analisar o nosso tráfego. "
        "Ao clicar em «Aceitar tudo», concorda com a utilização de cookies.",
        "accept": "Aceitar tudo",
        "reject": "Rejeitar",
        "settings": "Definições",
        "related": "Artigos relacionados",
        "popular": "Mais lidas",
        "newsletter": "Newsletter",
        "newsletter_text": "Receba as principais notícias todas as manhãs.",
        "subscribe": "Subscrever",
        "rights": "Todos os direitos reservados.",
        "privacy": "Política de privacidade",
        "terms": "Termos de utilização",
        "about": "Sobre nós",
        "contact": "Contactos",
        "by": "Por",
        "share": "Partilhar",
        "search": "Pesquisar",
        "comments": "comentários",
        "reply": "Responder",
    },
    "nl": {
        "nav": ("Home", "Nieuws", "Regio", "Cultuur", "Sport", "Over ons", "Contact"),
        "cookie": "Wij gebruiken cookies om content en advertenties te personaliseren en om ons verkeer te "
        "analyseren. Door op „Alles accepteren” te klikken, gaat u akkoord met het gebruik van cookies.",
        "accept": "Alles accepteren",
        "reject": "Weigeren",
        "settings": "Instellingen",
        "related": "Gerelateerde artikelen",
        "popular": "Meest gelezen",
        "newsletter": "Nieuwsbrief",
        "newsletter_text": "Ontvang elke ochtend het belangrijkste nieuws.",
        "subscribe": "Aanmelden",
        "rights": "Alle rechten voorbehouden.",
        "privacy": "Privacybeleid",
        "terms": "Gebruiksvoorwaarden",
        "about": "Over ons",
        "contact": "Contact",
        "by": "Door",
        "share": "Delen",
        "search": "Zoeken",
        "comments": "reacties",
        "reply": "Reageren",
    },
}

_SITES: dict[str, tuple[str, ...]] = {
    "en": _items("""riverside-gazette, thegreenthumbdiaries, northgate-chronicle, kitchen-table-notes,
    the-budget-planner, byteforge, trailhead-journal, harbour-town-news, the-weekend-fixer, stargazers-circle,
    backstage-pass, classroom-notes, wild-neighbours, sunday-league-report, maple-street-post, open-road-travel,
    pocket-money-blog, homegrown-weekly, the-daily-commute, quiet-corner-reviews, cityline-herald,
    fieldnotes-science, the-practical-cook, fit-after-forty, bright-ideas-hub, lakeside-courier"""),
    "de": _items("stadtanzeiger-nord, rundschau-am-main, blickpunkt-lokal"),
    "fr": _items("le-petit-courrier, echo-de-la-vallee, journal-du-quartier"),
    "es": _items("diario-del-barrio, la-voz-local, cronica-de-la-ciudad"),
    "it": _items("gazzetta-di-quartiere, il-corriere-locale, cronache-cittadine"),
    "pt": _items("jornal-da-terra, noticias-do-bairro, a-voz-da-regiao"),
    "nl": _items("stadskrant-online, de-wijkbode, regio-nieuws"),
}
_SERVERS = ("nginx/1.24.0", "Apache/2.4.58 (Ubuntu)", "cloudflare", "LiteSpeed", "Microsoft-IIS/10.0")
_THOUSANDS = {"en": ",", "fr": " ", "de": ".", "es": ".", "it": ".", "pt": ".", "nl": "."}
_FOREIGN_SHARE = {"de": 6, "fr": 6, "es": 5, "it": 5, "pt": 4, "nl": 4}  # relative weights of non-English pages

# ---------------------------------------------------------------------------------------------------------------
# Sentence generation


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _en_nouns(text: Sequence[str]) -> list[tuple[str, str]]:
    """English nouns as (singular, plural)."""
    out = []
    for n in text:
        sing, _, plural = n.partition("/")
        out.append((sing, plural or _plural(sing)))
    return out


def _en_verbs(text: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """English verbs as (3rd person, past, participle, base)."""
    out = []
    for v in text:
        parts = v.split("/")
        base, past = parts[0], parts[1]
        out.append((_third_person(base), past, parts[2] if len(parts) > 2 else past, base))
    return out


_SLOT = re.compile(r"\{(\w+)(?::(\d))?(?::(\w+))?\}")
_A_AN = re.compile(r"\b([Aa]) (?=([A-Za-z]+))")
_SMALL_WORDS = {"a", "an", "the", "and", "or", "of", "in", "on", "for", "to", "at", "by", "with", "from", "its"}


def _a_an(match: re.Match[str]) -> str:
    word = match.group(2).lower()
    vowel = word[0] in "aeiou" and not word.startswith(("uni", "use", "usu", "eu", "one"))
    return match.group(1) + ("n " if vowel or word.startswith(("hour", "honest")) else " ")


def _capitalize(sentence: str) -> str:
    for i, ch in enumerate(sentence):
        if ch.isalpha():
            return sentence[:i] + ch.upper() + sentence[i + 1 :]
    return sentence


def _title_case(text: str) -> str:
    words = text.split(" ")
    return " ".join(
        w if (i and w.lower() in _SMALL_WORDS) or not w[:1].isalpha() else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


class _Writer:
    """Fills sentence templates of one language from its lexicon, with one page's random generator."""

    def __init__(self, rng: random.Random, lang: str, topic: _Topic | None = None) -> None:
        self.rng = rng
        self.lang = lang
        if lang == "en":
            assert topic is not None
            self.topic = topic
            # Topic words twice as likely as generic ones, so a page reads as being about something.
            self.en_nouns = _en_nouns(topic.nouns) * 2 + _en_nouns(_EN_NOUNS)
            self.en_adjs = list(topic.adjectives) * 2 + list(_EN_ADJS)
            self.verbs = _en_verbs(topic.verbs) * 2 + _en_verbs(_EN_VERBS)
            self.first, self.last, self.cities = _EN_FIRST, _EN_LAST, _EN_CITIES
            self.months, self.days, self.times = _EN_MONTHS, _EN_DAYS, _EN_TIMES
            self.connectors = tuple(c.rstrip(";") + "," for c in _EN_CONNECTORS)
        else:
            self.grammar = _LANGUAGES[lang]
            g = self.grammar
            self.verbs = list(g.verbs)
            self.first, self.last, self.cities = g.first, g.last, g.cities
            self.months, self.days, self.times, self.connectors = g.months, g.days, g.times, g.connectors
        self._deck: list[str] = []

    def person(self) -> str:
        return f"{self.rng.choice(self.first)} {self.rng.choice(self.last)}"

    def organisation(self) -> str:
        return f"{self.rng.choice(_EN_ORG_A)} {self.rng.choice(_EN_ORG_B)}"

    def fill(self, template: str) -> str:
        nouns: dict[str, Any] = {}  # numbered noun -> the (word, gender) it stands for in this sentence
        text = template
        for _ in range(3):  # time expressions contain slots themselves
            if "{" not in text:
                break
            text = _SLOT.sub(lambda m: self._slot(m, nouns), text)
        if self.lang == "en":
            text = _A_AN.sub(_a_an, text)
        return _capitalize(text)

    def _noun(self, nouns: dict[str, Any], idx: str | None) -> Any:
        pool = self.en_nouns if self.lang == "en" else self.grammar.nouns
        if idx is None:
            return self.rng.choice(pool)
        while idx not in nouns:  # numbered nouns of one sentence are different nouns
            pick = self.rng.choice(pool)
            if pick not in nouns.values():
                nouns[idx] = pick
        return nouns[idx]

    def _slot(self, m: re.Match[str], nouns: dict[str, Any]) -> str:
        """The text for one ``{kind:idx:form}`` slot; nouns, adjectives and verbs agree within the sentence."""
        rng = self.rng
        kind, idx, form = m.group(1), m.group(2), m.group(3)
        if kind == "n":
            if self.lang == "en":
                return self._noun(nouns, idx)[0]
            word, gender = self._noun(nouns, idx)
            return self.grammar.noun_form(word, gender, form or "")
        if kind == "N":
            return self._noun(nouns, idx)[1]
        if kind == "a":
            if self.lang == "en":
                return rng.choice(self.en_adjs)
            masc, fem = rng.choice(self.grammar.adjectives)
            return fem if idx is not None and self._noun(nouns, idx)[1] == "f" else masc
        if kind in ("v", "vs", "vd", "vn", "vi"):
            third, past, participle, base = rng.choice(self.verbs)
            if self.lang == "en":
                return {"v": base, "vs": third, "vd": past, "vn": participle, "vi": base}[kind]
            return {"v": third, "vs": third, "vd": past, "vn": participle, "vi": base}[kind]
        return self._simple_slot(kind)

    def _simple_slot(self, kind: str) -> str:
        """A slot that needs nothing from the rest of the sentence: a name, a place, a number, a date part."""
        rng = self.rng
        simple: dict[str, Callable[[], str]] = {
            "P": self.person,
            "F": lambda: rng.choice(self.first),
            "S": lambda: rng.choice(self.last),
            "R": lambda: rng.choice(_EN_ROLES),
            "R2": lambda: rng.choice(_EN_ROLES).split(" ", 1)[1],
            "C": lambda: rng.choice(self.cities),
            "O": self.organisation,
            "adv": lambda: rng.choice(_EN_ADVERBS),
            "q": lambda: rng.choice(_EN_QUANT),
            "c": lambda: rng.choice(self.connectors),
            "t": lambda: rng.choice(self.times),
            "num": lambda: str(rng.randint(2, 40)),
            "big": lambda: f"{rng.randint(120, 9800):,}".replace(",", _THOUSANDS[self.lang]),
            "dom": lambda: str(rng.randint(1, 28)),
            "pct": lambda: str(rng.randint(5, 95)),
            "yr": lambda: str(rng.randint(1988, 2022)),
            "yr2": lambda: str(rng.randint(2025, 2027)),
            "mon": lambda: rng.choice(self.months),
            "day": lambda: rng.choice(self.days),
            "price": lambda: rng.choice(("$", "£", "€")) + f"{rng.randint(12, 2400):,}",
        }
        return simple[kind]()

    def sentence(self) -> str:
        """The next sentence, cycling through the shuffled templates so a page rarely repeats one."""
        if not self._deck:
            templates = _EN_TEMPLATES if self.lang == "en" else self.grammar.templates
            self._deck = list(templates)
            self.rng.shuffle(self._deck)
        return self.fill(self._deck.pop())

    def title(self) -> str:
        templates = _EN_TITLES if self.lang == "en" else self.grammar.titles
        text = self.fill(self.rng.choice(templates))
        return _title_case(text) if self.lang == "en" else text


# ---------------------------------------------------------------------------------------------------------------
# Articles and pages


@dataclass
class _Article:
    title: str
    blocks: list[tuple[str, Any]]  # ("p", [sentences]) | ("h2", text) | ("ul", [items]) | ("links", [titles])
    author: str = ""

    def paragraphs(self) -> list[list[str]]:
        return [b[1] for b in self.blocks if b[0] == "p"]

    def text(self) -> str:
        lines = [self.title]
        for kind, body in self.blocks:
            if kind == "p":
                lines.append(" ".join(body))
            elif kind == "h2":
                lines.append(body)
            else:
                lines.extend(body)
        return "\n".join(lines)

    def words(self) -> int:
        return sum(len(" ".join(p).split()) for p in self.paragraphs())


@dataclass
class _Page:
    lang: str
    kind: str  # good | duplicate | low_quality | pii
    article: _Article
    site: str = ""
    section: str = "news"
    url: str = ""
    charset: str = "utf-8"
    dup_cluster: str | None = None
    pii: list[dict[str, str]] = field(default_factory=list)
    non_pii: list[str] = field(default_factory=list)
    low_quality: str | None = None
    expected_reason: str | None = None
    drop_filter: str | None = None
    file: int = 0
    date: datetime = WARC_DATE_BASE
    html: str = ""

    def payload(self) -> bytes:
        """The HTTP body as served: the HTML in the page's charset."""
        return self.html.encode(self.charset, errors="xmlcharrefreplace")


def _english_article(rng: random.Random, topic: _Topic, min_words: int = 320, max_words: int = 680) -> _Article:
    w = _Writer(rng, "en", topic)
    n_par = rng.randint(4, 6)
    paragraphs = [[w.sentence() for _ in range(rng.randint(5, 7))] for _ in range(n_par)]
    while sum(len(" ".join(p).split()) for p in paragraphs) < min_words:
        rng.choice(paragraphs).append(w.sentence())
    while sum(len(" ".join(p).split()) for p in paragraphs) > max_words:
        longest = max(paragraphs, key=len)
        if len(longest) <= 5:
            break
        longest.pop(rng.randrange(1, len(longest)))
    blocks: list[tuple[str, Any]] = [("p", p) for p in paragraphs]
    if rng.random() < 0.5:
        blocks.insert(rng.randint(2, len(blocks) - 1), ("h2", _title_case(w.fill(rng.choice(_EN_SUBHEADS)))))
    if rng.random() < 0.3:
        items = rng.sample(_EN_LIST_ITEMS, rng.randint(3, 5))
        blocks.insert(rng.randint(2, len(blocks) - 1), ("ul", [w.fill(i) for i in items]))
    return _Article(w.title(), blocks, author=w.person())


def _foreign_article(rng: random.Random, lang: str) -> _Article:
    w = _Writer(rng, lang)
    paragraphs = [[w.sentence() for _ in range(rng.randint(5, 6))] for _ in range(rng.randint(4, 5))]
    return _Article(w.title(), [("p", p) for p in paragraphs], author=w.person())


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def _jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact Jaccard similarity of the word n-gram sets of two texts (whitespace tokens)."""
    sa, sb = _shingles(a, n), _shingles(b, n)
    return len(sa & sb) / max(len(sa | sb), 1)


def _near_duplicate(rng: random.Random, original: _Article, topic: _Topic, edits: int) -> _Article:
    """A copy with small edits: words changed or inserted, a sentence added or removed."""
    paragraphs = [list(p) for p in original.paragraphs()]
    w = _Writer(rng, "en", topic)
    for _ in range(edits):
        op = rng.choice(("swap", "insert", "sentence"))
        par = rng.choice(paragraphs)
        i = rng.randrange(len(par))
        words = par[i].split(" ")
        if op == "swap":
            j = rng.randrange(1, len(words))
            if words[j].isdigit():
                words[j] = str(int(words[j]) + rng.randint(1, 9))
            elif words[j].isalpha():
                words[j] = rng.choice(_EN_ADJS)
        elif op == "insert":
            words.insert(rng.randrange(1, len(words)), rng.choice(("also", "really", "still", "now", "often")))
        elif rng.random() < 0.5 and len(par) > 5:
            par.pop(i)
            continue
        else:
            par.insert(i, w.sentence())
            continue
        par[i] = " ".join(words)
    it = iter(paragraphs)
    blocks = [("p", next(it)) if kind == "p" else (kind, body) for kind, body in original.blocks]
    return _Article(original.title, blocks, author=original.author)


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(digits)):
        x = int(d) * (2 if i % 2 == 0 else 1)
        total += x - 9 if x > 9 else x
    return digits + str((10 - total % 10) % 10)


def _pii_value(kind: str, rng: random.Random, first: str, last: str) -> str:
    if kind == "EMAIL_ADDRESS":
        user = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first}{rng.randint(7, 99)}", f"{last}.{first}"))
        user = unicodedata.normalize("NFKD", user).encode("ascii", "ignore").decode().lower().replace("'", "")
        return f"{user}@{rng.choice(('example.com', 'example.org', 'example.net', 'example.co.uk'))}"
    if kind == "PHONE_NUMBER":
        return rng.choice(
            (
                f"+1 212-555-01{rng.randint(0, 99):02d}",
                f"(415) 555-01{rng.randint(0, 99):02d}",
                f"+1 (646) 555-01{rng.randint(0, 99):02d}",
                f"312-555-01{rng.randint(0, 99):02d}",
                f"+44 20 7946 0{rng.randint(0, 999):03d}",
                f"+44 161 496 0{rng.randint(0, 999):03d}",
                f"+49 30 9018{rng.randint(10, 99)}",
                f"+49 89 {rng.randint(2000000, 8999999)}",
            )
        )
    if kind == "IP_ADDRESS":
        if rng.random() < 0.3:
            return rng.choice(
                (
                    "2001:4860:4860::8888",
                    "2606:4700:4700::1111",
                    "2620:fe::fe",
                    f"2a00:1450:4001:8{rng.randint(10, 39)}::200e",
                )
            )
        while True:
            ip = ipaddress.IPv4Address(rng.randint(0x01000000, 0xDF000000))
            if ip.is_global and not ip.is_multicast:
                return str(ip)
    if kind == "CREDIT_CARD":
        prefix, length = rng.choice((("4", 16), ("51", 16), ("55", 16), ("4111", 16), ("6011", 16), ("37", 15)))
        number = _luhn_complete(prefix, length, rng)
        style = rng.random()
        if length == 15:
            return f"{number[:4]} {number[4:10]} {number[10:]}" if style < 0.7 else number
        if style < 0.6:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return "-".join(number[i : i + 4] for i in range(0, 16, 4)) if style < 0.85 else number
    raise ValueError(kind)


def _non_pii_value(rng: random.Random) -> str:
    """Addresses that look like PII but are not (FineWeb keeps them): private, link-local, documentation ranges."""
    return rng.choice(
        (
            f"192.168.{rng.randint(0, 9)}.{rng.randint(2, 250)}",
            f"10.0.{rng.randint(0, 20)}.{rng.randint(2, 250)}",
            f"172.16.{rng.randint(0, 31)}.{rng.randint(2, 250)}",
            f"fe80::{rng.randint(1, 0xFFFF):x}",
            f"203.0.113.{rng.randint(2, 250)}",
            f"2001:db8::{rng.randint(1, 0xFFFF):x}",
        )
    )


def _plant_pii(rng: random.Random, page: _Page, topic: _Topic, kinds: list[str], with_non_pii: bool) -> None:
    w = _Writer(rng, "en", topic)
    paragraphs = page.article.paragraphs()
    sentences: list[str] = []
    for kind in kinds:
        value = _pii_value(kind, rng, rng.choice(_EN_FIRST), rng.choice(_EN_LAST))
        page.pii.append({"type": kind, "value": value})
        sentences.append(w.fill(rng.choice(_PII_SENTENCES[kind]).replace("{value}", value)))
    if with_non_pii:
        value = _non_pii_value(rng)
        page.non_pii.append(value)
        sentences.append(w.fill(rng.choice(_NON_PII_SENTENCES).replace("{value}", value)))
    for s in sentences:
        par = rng.choice(paragraphs)
        par.insert(rng.randint(1, len(par)), s)


def _low_quality_article(rng: random.Random, kind: str, variant: int) -> tuple[_Article, str]:
    """(article, language) of one low-quality page."""
    if kind == "keyword_spam":
        keywords = _SPAM_KEYWORDS[variant % len(_SPAM_KEYWORDS)]
        paras = []
        for _ in range(rng.randint(3, 6)):
            words = []
            for _ in range(rng.randint(25, 45)):
                words.append(rng.choice(keywords))
                if rng.random() < 0.4:
                    words.append(rng.choice(_SPAM_FILLERS))
            paras.append([" ".join(words)])
        title = _title_case(" ".join(rng.sample(keywords, 3)))
        return _Article(title, [("p", p) for p in paras]), "en"
    if kind == "link_list":
        titles = rng.sample(_LINK_TITLES, rng.randint(25, 38))
        return _Article(
            rng.choice(("Useful Links", "Top Resources", "Popular Searches", "Sitemap")), [("links", titles)]
        ), "en"
    if kind == "lorem_ipsum":

        def lorem_sentence() -> str:
            return _capitalize(" ".join(rng.choice(_LOREM) for _ in range(rng.randint(8, 16)))) + "."

        lorem = [["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] + [lorem_sentence() for _ in range(5)]]
        lorem += [[lorem_sentence() for _ in range(rng.randint(4, 6))] for _ in range(rng.randint(1, 3))]
        if variant % 2 == 0:
            return _Article("Lorem Ipsum Dolor Sit Amet", [("p", p) for p in lorem]), "la"
        # An English page whose designer left placeholder text in one block.
        english = _english_article(rng, rng.choice(_EN_TOPICS), 200, 400)
        blocks = english.blocks[:2] + [("p", lorem[0])] + english.blocks[2:]
        return _Article(english.title, blocks, english.author), "en"
    if kind == "short":
        return _Article(
            rng.choice(("Notice", "Update", "Announcement", "News")),
            [("p", [_SHORT_TEXTS[variant % len(_SHORT_TEXTS)]])],
        ), "en"
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------------------------
# HTML


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:60].strip("-")


def _site_name(site: str) -> str:
    return " ".join(w.capitalize() for w in site.split("-"))


def _host(site: str) -> str:
    return f"www.{site}.example"


def _layout(site: str) -> int:
    return int(hashlib.sha1(site.encode()).hexdigest(), 16) % 4


def _format_date(d: datetime, lang: str) -> str:
    return f"{d.day} {_EN_MONTHS[d.month - 1]} {d.year}" if lang == "en" else d.strftime("%d.%m.%Y")


def _article_body(article: _Article, base: str) -> str:
    out = []
    for kind, body in article.blocks:
        if kind == "p":
            out.append(f"<p>{html.escape(' '.join(body))}</p>")
        elif kind == "h2":
            out.append(f"<h2>{html.escape(body)}</h2>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in body) + "</ul>")
        else:  # links
            out.append(
                '<ul class="link-list">'
                + "".join(f'<li><a href="{base}/go/{_slug(t)}">{html.escape(t)}</a></li>' for t in body)
                + "</ul>"
            )
    return "\n".join(out)


def _cookie_banner(t: dict[str, Any]) -> str:
    esc = html.escape
    return (
        f'<div id="cookie-consent" class="cookie-banner" role="dialog" aria-live="polite"><p>{esc(t["cookie"])}</p>'
        f'<button class="btn accept">{esc(t["accept"])}</button><button class="btn reject">{esc(t["reject"])}</button>'
        f' <a href="/cookies/">{esc(t["settings"])}</a></div>'
    )


def _site_header(t: dict[str, Any], name: str) -> str:
    esc = html.escape
    nav = "".join(f'<li><a href="/{_slug(x) or "home"}/">{esc(x)}</a></li>' for x in t["nav"])
    return (
        f'<header class="site-header"><a class="logo" href="/">{esc(name)}</a>'
        f'<nav class="main-nav" aria-label="Main"><ul>{nav}</ul></nav>'
        f'<form class="search" action="/search" role="search"><input type="search" name="q" '
        f'placeholder="{esc(t["search"])}"><button>{esc(t["search"])}</button></form></header>'
    )


def _sidebar(t: dict[str, Any], related: list[_Page], popular: list[_Page]) -> str:
    esc = html.escape
    related_html = "".join(f'<li><a href="{esc(p.url)}">{esc(p.article.title)}</a></li>' for p in related)
    popular_html = "".join(f'<li><a href="{esc(p.url)}">{esc(p.article.title)}</a></li>' for p in popular)
    return (
        f'<aside class="sidebar" role="complementary">'
        f'<section class="widget related-posts"><h3>{esc(t["related"])}</h3><ul>{related_html}</ul></section>'
        f'<section class="widget popular-posts"><h3>{esc(t["popular"])}</h3><ol>{popular_html}</ol></section>'
        f'<section class="widget newsletter"><h3>{esc(t["newsletter"])}</h3><p>{esc(t["newsletter_text"])}</p>'
        f'<form action="/subscribe" method="post"><input type="email" name="email" placeholder="you@example.com">'
        f"<button>{esc(t['subscribe'])}</button></form></section></aside>"
    )


def _site_footer(t: dict[str, Any], name: str, year: int) -> str:
    esc = html.escape
    return (
        f'<footer class="site-footer"><nav class="footer-links"><a href="/about/">{esc(t["about"])}</a> | '
        f'<a href="/contact/">{esc(t["contact"])}</a> | <a href="/privacy/">{esc(t["privacy"])}</a> | '
        f'<a href="/terms/">{esc(t["terms"])}</a></nav>'
        f"<p>&copy; {year} {esc(name)}. {esc(t['rights'])}</p></footer>"
    )


def _byline(page: _Page, t: dict[str, Any]) -> str:
    """Author link and publication date; '' for a page without an author."""
    a = page.article
    if not a.author:
        return ""
    esc = html.escape
    author_slug = _slug(a.author)
    return (
        f'<p class="byline">{esc(t["by"])} <a rel="author" href="/author/{author_slug}/">{esc(a.author)}</a>'
        f' · <time datetime="{page.date:%Y-%m-%d}">{_format_date(page.date, page.lang)}</time></p>'
    )


def _share_buttons(t: dict[str, Any]) -> str:
    return (
        f'<div class="share-buttons"><span>{html.escape(t["share"])}:</span> <a href="https://facebook.example/share">'
        f'Facebook</a> <a href="https://x.example/intent">X</a> <a href="mailto:?subject=article">Email</a></div>'
    )


def _comments(page: _Page, t: dict[str, Any], rng: random.Random) -> str:
    """A comment section on about half of the English pages with an author; '' elsewhere."""
    if not (page.lang == "en" and page.article.author and rng.random() < 0.5):
        return ""
    esc = html.escape
    chosen = rng.sample(_EN_COMMENTS, rng.randint(2, 3))
    items = "".join(
        f'<li class="comment"><p class="comment-author">{esc(rng.choice(_EN_FIRST))}</p>'
        f'<p>{esc(c)}</p><a class="reply" href="#respond">{esc(t["reply"])}</a></li>'
        for c in chosen
    )
    return (
        f'<section id="comments" class="comments-area"><h3>{len(chosen)} {esc(t["comments"])}</h3>'
        f'<ol class="comment-list">{items}</ol></section>'
    )


def _main_content(
    page: _Page, t: dict[str, Any], layout: int, *, byline: str, body: str, share: str, comments: str, sidebar: str
) -> str:
    """The article with its byline, share buttons, comments and sidebar, arranged as one of the four layouts."""
    esc = html.escape
    title = esc(page.article.title)
    if layout == 0:  # WordPress-like
        article = (
            f'<article class="post type-post status-publish"><header class="entry-header">'
            f'<h1 class="entry-title">{title}</h1>{byline}</header>'
            f'<div class="entry-content">\n{body}\n</div><footer class="entry-footer">{share}</footer></article>'
        )
        return f'<div id="content" class="site-content"><main id="main">{article}{comments}</main>{sidebar}</div>'
    if layout == 1:  # news site
        article = (
            f'<article class="story"><h1>{title}</h1>{byline}<div class="story-body">\n{body}\n</div>{share}</article>'
        )
        return (
            f'<main class="layout"><div class="breadcrumbs"><a href="/">{esc(t["nav"][0])}</a> › '
            f'<a href="/{page.section}/">{esc(page.section.title())}</a></div>{article}{comments}{sidebar}</main>'
        )
    if layout == 2:  # bootstrap-style blog
        article = f'<article class="blog-post"><h1 class="display-5">{title}</h1>{byline}\n{body}\n{share}</article>'
        return (
            f'<div class="container"><div class="row"><div class="col-md-8">{article}{comments}</div>'
            f'<div class="col-md-4">{sidebar}</div></div></div>'
        )
    # minimal, banner at the bottom
    article = f"<article><h1>{title}</h1>{byline}\n{body}\n</article>"
    return f"<main>{article}{comments}</main>{sidebar}"


def _head(page: _Page, name: str) -> str:
    """The <head> contents: charset declaration, title, description, canonical URL, JSON-LD and a tracker stub."""
    esc = html.escape
    a = page.article
    description = esc(" ".join(a.paragraphs()[0])[:150]) if a.paragraphs() else ""
    meta_charset = (
        f'<meta http-equiv="Content-Type" content="text/html; charset={page.charset}">'
        if page.charset == "windows-1252"
        else f'<meta charset="{page.charset}">'
    )
    ld = json.dumps(
        {
            "@context": "https://schema.org",
            "@type": "Article",
            "headline": a.title,
            "datePublished": f"{page.date:%Y-%m-%d}",
        },
        ensure_ascii=False,
    )
    return (
        f"{meta_charset}\n"
        f"<title>{esc(a.title)} | {esc(name)}</title>\n"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="description" content="{description}">\n'
        f'<link rel="canonical" href="{esc(page.url)}">\n'
        f'<link rel="stylesheet" href="/static/css/main.{hashlib.sha1(page.site.encode()).hexdigest()[:8]}.css">\n'
        f'<script type="application/ld+json">{ld}</script>\n'
        f"<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}</script>\n"
    )


def _render(page: _Page, related: list[_Page], popular: list[_Page], rng: random.Random) -> str:
    """The page's HTML: boilerplate of its site (one of four layouts) around the article."""
    t = _CHROME.get(page.lang, _CHROME["en"])
    name = _site_name(page.site)
    layout = _layout(page.site)
    cookie = _cookie_banner(t)
    main = _main_content(
        page,
        t,
        layout,
        byline=_byline(page, t),
        body=_article_body(page.article, f"https://{_host(page.site)}"),
        share=_share_buttons(t),
        comments=_comments(page, t, rng),
        sidebar=_sidebar(t, related, popular),
    )
    cookie_top, cookie_bottom = (cookie, "") if layout != 3 else ("", cookie)
    return (
        f'<!DOCTYPE html>\n<html lang="{page.lang}">\n<head>\n{_head(page, name)}'
        f'</head>\n<body class="layout-{layout}">\n{cookie_top}\n{_site_header(t, name)}\n{main}\n'
        f"{_site_footer(t, name, page.date.year)}\n{cookie_bottom}\n"
        f'<script src="/static/js/app.js" defer></script>\n</body>\n</html>\n'
    )


# ---------------------------------------------------------------------------------------------------------------
# WARC records


def _digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    """One WARC/1.1 record as its own gzip member (mtime 0, so bytes depend on content only)."""
    head = ["WARC/1.1"] + [f"{k}: {v}" for k, v in headers]
    head.insert(4, f"Content-Length: {len(block)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + block + b"\r\n\r\n"
    return gzip.compress(data, compresslevel=6, mtime=0)


def _png(rng: random.Random, size: int = 16) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    color = bytes(rng.randrange(256) for _ in range(3))
    raw = b"".join(b"\x00" + color * size for _ in range(size))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _pdf(title: str) -> bytes:
    text = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@dataclass
class _Fetch:
    """One fetched URL: becomes a request, a response and a metadata record."""

    url: str
    status: int
    reason: str
    content_type: str
    body: bytes
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    page: _Page | None = None
    kind: str = "page"  # page | non_html | non_200 | malformed
    record_id: str = ""
    offset: int = 0


class _WarcBuilder:
    """Serialises fetches into one WARC file's bytes, with seeded record ids and dates."""

    def __init__(self, name: str, ids: random.Random, clock: list[int]) -> None:
        self.name = name
        self.ids = ids
        self.clock = clock
        self.out = bytearray()
        self.info_id = self._id()
        info = (
            b"software: lmpipe.pipelines.sample (synthetic, deterministic)\r\n"
            b"format: WARC File Format 1.1\r\n"
            b"conformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n"
            b"isPartOf: lmpipe-sample\r\n"
            b"description: Synthetic sample crawl with planted duplicates, PII and low-quality pages\r\n"
            b"robots: classic\r\n"
        )
        self.out += _record(
            [
                ("WARC-Type", "warcinfo"),
                ("WARC-Date", self._date()),
                ("WARC-Filename", name),
                ("WARC-Record-ID", self.info_id),
                ("Content-Type", "application/warc-fields"),
                ("WARC-Block-Digest", _digest(info)),
            ],
            info,
        )

    def _id(self) -> str:
        return f"<urn:uuid:{uuid.UUID(int=self.ids.getrandbits(128), version=4)}>"

    def _date(self) -> str:
        self.clock[0] += 1
        return (WARC_DATE_BASE + timedelta(seconds=self.clock[0])).strftime("%Y-%m-%dT%H:%M:%SZ")

    def add(self, f: _Fetch, ip: str, fetch_ms: int) -> None:
        """Append the request, response and metadata records of one fetch; set its record id and offset."""
        date = self._date()
        request_id = self._add_request(f, date, ip)
        f.record_id = self._id()
        self._add_response(f, date, ip, request_id)
        self._add_metadata(f, date, fetch_ms)

    def _add_request(self, f: _Fetch, date: str, ip: str) -> str:
        """Append the request record; return its record id."""
        path = "/" + f.url.split("/", 3)[3]
        host = f.url.split("/")[2]
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: CCBot/2.0 (https://commoncrawl.org/faq/)\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: br,gzip\r\nConnection: Keep-Alive\r\n\r\n"
        ).encode()
        request_id = self._id()
        self.out += _record(
            [
                ("WARC-Type", "request"),
                ("WARC-Date", date),
                ("WARC-Record-ID", request_id),
                ("Content-Type", "application/http; msgtype=request"),
                ("WARC-Warcinfo-ID", self.info_id),
                ("WARC-IP-Address", ip),
                ("WARC-Target-URI", f.url),
                ("WARC-Block-Digest", _digest(request)),
            ],
            request,
        )
        return request_id

    def _add_response(self, f: _Fetch, date: str, ip: str, request_id: str) -> None:
        if f.kind == "malformed":
            # Valid WARC framing around an HTTP message that is not one: garbled status line, truncated headers.
            block = b"HTTP/1.1 2OO 0K\r\nContent-Type text/html\r\nX-Cache: HIT fr\x00m edge\r\nContent-Le"
            payload_digest: list[tuple[str, str]] = []
        else:
            when = datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            host = f.url.split("/")[2]
            http_head = [
                f"HTTP/1.1 {f.status} {f.reason}",
                f"Date: {email.utils.format_datetime(when, usegmt=True)}",
                f"Server: {_SERVERS[int(hashlib.sha1(host.encode()).hexdigest(), 16) % len(_SERVERS)]}",
                f"Content-Type: {f.content_type}",
                f"Content-Length: {len(f.body)}",
                *[f"{k}: {v}" for k, v in f.extra_headers],
                "Connection: close",
            ]
            block = ("\r\n".join(http_head) + "\r\n\r\n").encode() + f.body
            payload_digest = [("WARC-Payload-Digest", _digest(f.body))]
        f.offset = len(self.out)
        mime = f.content_type.split(";")[0].strip()
        self.out += _record(
            [
                ("WARC-Type", "response"),
                ("WARC-Date", date),
                ("WARC-Record-ID", f.record_id),
                ("Content-Type", "application/http; msgtype=response"),
                ("WARC-Warcinfo-ID", self.info_id),
                ("WARC-Concurrent-To", request_id),
                ("WARC-IP-Address", ip),
                ("WARC-Target-URI", f.url),
                *payload_digest,
                ("WARC-Block-Digest", _digest(block)),
                ("WARC-Identified-Payload-Type", mime),
            ],
            block,
        )

    def _add_metadata(self, f: _Fetch, date: str, fetch_ms: int) -> None:
        meta = f"fetchTimeMs: {fetch_ms}\r\n"
        if f.page is not None:
            meta += f"charset-detected: {f.page.charset.upper()}\r\n"
            cld2 = {
                "reliable": True,
                "text-bytes": len(f.body),
                "languages": [{"code": f.page.lang, "text-covered": 0.97}],
            }
            meta += f"languages-cld2: {json.dumps(cld2, separators=(',', ':'))}\r\n"
        meta_bytes = meta.encode()
        self.out += _record(
            [
                ("WARC-Type", "metadata"),
                ("WARC-Date", date),
                ("WARC-Record-ID", self._id()),
                ("Content-Type", "application/warc-fields"),
                ("WARC-Warcinfo-ID", self.info_id),
                ("WARC-Concurrent-To", f.record_id),
                ("WARC-Target-URI", f.url),
                ("WARC-Block-Digest", _digest(meta_bytes)),
            ],
            meta_bytes,
        )


# ---------------------------------------------------------------------------------------------------------------
# Planning


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random("/".join(map(str, (seed, *parts))))


def _plan_counts(pages: int) -> dict[str, int]:
    low = max(4, round(pages * 36 / 520))
    clusters = max(1, round(pages * 25 / 520))
    pii = max(2, round(pages * 40 / 520))
    foreign = round(pages * 0.33)
    return {"low": low, "clusters": clusters, "pii": pii, "foreign": foreign}


_FILTER_NAMES = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"trafilatura": version("trafilatura"), "datatrove": version("datatrove")}


def _observed_reason(html_text: str) -> tuple[str, str] | None:
    """(filter, reason) of the first datatrove quality filter, in FineWeb order and settings, that drops
    trafilatura's text of the page; ("extract", "empty_extraction") if nothing is extracted; None if it passes."""
    import trafilatura
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    trafilatura_logger = logging.getLogger("trafilatura")
    level = trafilatura_logger.level
    trafilatura_logger.setLevel(logging.ERROR)  # "discarding data: None" is the expected outcome here
    try:
        text = trafilatura.extract(html_text, favor_precision=True, include_comments=False)
    finally:
        trafilatura_logger.setLevel(level)
    if not text or not text.strip():
        return "extract", "empty_extraction"
    filters = (
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    )
    for name, f in zip(_FILTER_NAMES, filters, strict=True):
        result = f.filter(Document(text=text, id="probe"))
        if result is not True:
            return name, result[1] if isinstance(result, tuple) else "dropped"
    return None


def _known_reasons(out: Path, versions: dict[str, str]) -> dict[str, tuple[str, str]]:
    """payload digest -> (filter, reason) from an existing truth file written with the same tool versions.

    Observing a reason needs datatrove's English tokenizer (spaCy), seconds to import; a rerun that produces
    the same pages reuses what was observed for the identical bytes.
    """
    try:
        old = load_truth(out)
    except (OSError, ValueError):
        return {}
    if old.get("verified_with") != versions:
        return {}
    return {
        p["payload_digest"]: (p["low_quality"]["filter"], p["low_quality"]["expected_reason"])
        for p in old.get("pages", [])
        if p.get("low_quality") and p.get("payload_digest") and p["low_quality"].get("filter")
    }


def _duplicate_cluster(seed: int, c: int) -> list[_Page]:
    """Near-duplicate cluster ``c``: an original and 1–3 edited copies, each on another site."""
    crng = _rng(seed, "cluster", c)
    topic = crng.choice(_EN_TOPICS)
    original = _english_article(crng, topic, 380, 680)
    members = [original]
    size = crng.randint(2, 4)
    while len(members) < size:
        for attempt in range(20):
            # 0.88 on the article leaves a margin for extraction and makes MinHash (14 x 8) miss a pair < 1%.
            copy = _near_duplicate(crng, original, topic, edits=max(1, 3 - attempt // 5))
            text = copy.text()
            if text != original.text() and all(_jaccard(text, m.text()) >= 0.88 for m in members):
                members.append(copy)
                break
        else:
            break
    sites = crng.sample(_SITES["en"], len(members))
    return [
        _Page("en", "duplicate", m, site=site, section=_slug(topic.section), dup_cluster=f"dup-{c:03d}")
        for m, site in zip(members, sites, strict=True)
    ]


def _low_quality_pages(seed: int, n: int) -> list[_Page]:
    """Low-quality pages, four families in turn."""
    families = ("keyword_spam", "link_list", "lorem_ipsum", "short")
    pages = []
    for i in range(n):
        kind = families[i % 4]
        lrng = _rng(seed, "low", i)
        article, lang = _low_quality_article(lrng, kind, i // 4)
        pages.append(_Page(lang, "low_quality", article, site=lrng.choice(_SITES["en"]), low_quality=kind))
    return pages


def _pii_pages(seed: int, n: int) -> list[_Page]:
    """Good English pages with planted values (cycled types, so each type appears often)."""
    types = ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD"]
    pages = []
    for i in range(n):
        prng = _rng(seed, "pii", i)
        topic = prng.choice(_EN_TOPICS)
        page = _Page(
            "en", "pii", _english_article(prng, topic), site=prng.choice(_SITES["en"]), section=_slug(topic.section)
        )
        kinds = [types[i % 4]] + prng.sample(types, prng.randint(0, 2))
        _plant_pii(prng, page, topic, kinds, with_non_pii=i % 3 == 0)
        pages.append(page)
    return pages


def _foreign_pages(seed: int, n: int) -> list[_Page]:
    """Good pages in the other languages, in proportion to their share."""
    total_w = sum(_FOREIGN_SHARE.values())
    langs = [lang for lang, w in _FOREIGN_SHARE.items() for _ in range(w)]
    pages = []
    for i in range(n):
        lang = langs[i * total_w // n]
        frng = _rng(seed, "foreign", i)
        pages.append(_Page(lang, "good", _foreign_article(frng, lang), site=frng.choice(_SITES[lang])))
    return pages


def _good_pages(seed: int, n: int) -> list[_Page]:
    """Good English pages; a few carry a non-PII look-alike only."""
    pages = []
    for i in range(max(n, 0)):
        grng = _rng(seed, "good", i)
        topic = grng.choice(_EN_TOPICS)
        page = _Page(
            "en", "good", _english_article(grng, topic), site=grng.choice(_SITES["en"]), section=_slug(topic.section)
        )
        if i % 40 == 7:
            _plant_pii(grng, page, topic, [], with_non_pii=True)
        pages.append(page)
    return pages


def _build_pages(cfg: SampleConfig) -> list[_Page]:
    seed = cfg.seed
    counts = _plan_counts(cfg.pages)
    rng = _rng(seed, "plan")
    pages: list[_Page] = []
    for c in range(counts["clusters"]):
        pages += _duplicate_cluster(seed, c)
    n_dups = len(pages)
    pages += _low_quality_pages(seed, counts["low"])
    pages += _pii_pages(seed, counts["pii"])
    pages += _foreign_pages(seed, counts["foreign"])
    pages += _good_pages(seed, cfg.pages - len(pages))  # the rest

    # Legacy charsets, declared only in a <meta> tag, on a few pages with accented text.
    legacy = [p for p in pages if p.lang in ("de", "fr", "es", "pt")]
    for j, p in enumerate(rng.sample(legacy, min(6, len(legacy)))):
        p.charset = "iso-8859-1" if j % 2 == 0 else "windows-1252"
    logger.debug("planned %d pages (%d in duplicate clusters)", len(pages), n_dups)
    return pages


def _assign(pages: list[_Page], cfg: SampleConfig) -> None:
    """Files, dates and unique URLs. Cluster members go to different files where there is more than one."""
    rng = _rng(cfg.seed, "assign")
    next_file = 0
    cluster_pos: dict[str, int] = {}
    for p in pages:
        if p.dup_cluster is not None:
            k = cluster_pos.get(p.dup_cluster, 0)
            cluster_pos[p.dup_cluster] = k + 1
            p.file = (int(p.dup_cluster[4:]) + k) % cfg.files
        else:
            p.file = next_file % cfg.files
            next_file += 1
    used: set[str] = set()
    for i, p in enumerate(pages):
        p.date = WARC_DATE_BASE - timedelta(days=rng.randint(1, 900), minutes=rng.randint(0, 1439))
        slug = _slug(p.article.title) or "page"
        layout = _layout(p.site)
        base = f"https://{_host(p.site)}"
        url = {
            0: f"{base}/{p.date:%Y/%m}/{slug}/",
            1: f"{base}/{p.section}/{slug}-{rng.randint(10_000, 99_999)}",
            2: f"{base}/blog/{slug}",
            3: f"{base}/articles/{i + 1000}-{slug}.html",
        }[layout]
        while url in used:
            url = url.rstrip("/") + f"-{rng.randint(2, 99)}"
        used.add(url)
        p.url = url


def _non_html_fetches(rng: random.Random, base: list[str]) -> list[_Fetch]:
    """Two PNG images, a PDF and two JSON API responses, on the sites ``base[0]`` … ``base[4]``."""
    return [
        _Fetch(f"{base[0]}/images/logo.png", 200, "OK", "image/png", _png(rng), kind="non_html"),
        _Fetch(f"{base[1]}/uploads/2023/header-banner.png", 200, "OK", "image/png", _png(rng, 24), kind="non_html"),
        _Fetch(
            f"{base[2]}/files/annual-report-2023.pdf",
            200,
            "OK",
            "application/pdf",
            _pdf("Annual report 2023"),
            kind="non_html",
        ),
        _Fetch(
            f"{base[3]}/api/v1/articles?page=2",
            200,
            "OK",
            "application/json",
            json.dumps(
                {
                    "page": 2,
                    "per_page": 3,
                    "items": [{"id": rng.randint(1000, 9999), "title": t} for t in rng.sample(_LINK_TITLES, 3)],
                }
            ).encode(),
            kind="non_html",
        ),
        _Fetch(
            f"{base[4]}/wp-json/wp/v2/posts?per_page=1",
            200,
            "OK",
            "application/json; charset=utf-8",
            json.dumps([{"id": rng.randint(100, 999), "status": "publish"}]).encode(),
            kind="non_html",
        ),
    ]


def _broken_fetches(base: list[str]) -> list[_Fetch]:
    """The 404 and the 301 on the sites ``base[5]`` and ``base[6]``, the malformed record on ``base[7]``."""
    return [
        _Fetch(
            f"{base[5]}/this-page-does-not-exist/",
            404,
            "Not Found",
            "text/html; charset=utf-8",
            b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
            b"<p>The requested URL was not found on this server.</p></body></html>",
            kind="non_200",
        ),
        _Fetch(
            f"{base[6]}/old-blog/",
            301,
            "Moved Permanently",
            "text/html; charset=utf-8",
            f'<html><body><a href="{base[6]}/blog/">Moved</a></body></html>'.encode(),
            extra_headers=[("Location", f"{base[6]}/blog/")],
            kind="non_200",
        ),
        _Fetch(f"{base[7]}/feed/", 200, "OK", "text/html", b"", kind="malformed"),
    ]


def _special_fetches(cfg: SampleConfig) -> list[tuple[int, _Fetch]]:
    """(file, fetch) for the non-HTML responses, the 404, the 301 and the malformed record."""
    rng = _rng(cfg.seed, "special")
    sites = rng.sample(_SITES["en"], 8)
    base = [f"https://{_host(s)}" for s in sites]
    items = _non_html_fetches(rng, base) + _broken_fetches(base)
    return [((i if f.kind != "malformed" else 1) % cfg.files, f) for i, f in enumerate(items)]


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write ``data``; leave an identical existing file (and its mtime) untouched."""
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; these are shareable outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _render_pages(pages: list[_Page], cfg: SampleConfig, known: dict[str, tuple[str, str]]) -> None:
    """Set every page's HTML, linking to peers of its language; settle each low-quality page's drop reason."""
    render_rng = _rng(cfg.seed, "render")
    by_lang: dict[str, list[_Page]] = {}
    for p in pages:
        if p.kind != "low_quality":
            by_lang.setdefault(p.lang, []).append(p)
    for i, p in enumerate(pages):
        peers = [q for q in by_lang.get(p.lang, by_lang["en"]) if q is not p]
        related = render_rng.sample(peers, min(5, len(peers)))
        popular = render_rng.sample(peers, min(5, len(peers)))
        p.html = _render(p, related, popular, render_rng)
        if p.kind == "low_quality":
            _settle_drop_reason(p, i, cfg.seed, known, related, popular, render_rng)


def _settle_drop_reason(
    p: _Page,
    i: int,
    seed: int,
    known: dict[str, tuple[str, str]],
    related: list[_Page],
    popular: list[_Page],
    render_rng: random.Random,
) -> None:
    """Low-quality pages must really fail a FineWeb filter; redraw page ``i`` (rarely needed) until it does."""
    for attempt in range(5):
        digest = _digest(p.payload())
        observed = known[digest] if digest in known else _observed_reason(p.html)
        if observed is not None:
            p.drop_filter, p.expected_reason = observed
            break
        lrng = _rng(seed, "low-retry", i, attempt)
        p.article, p.lang = _low_quality_article(lrng, p.low_quality or "short", attempt)
        p.html = _render(p, related, popular, render_rng)
    else:
        logger.warning("low-quality page %s passes every quality filter", p.url)


def _per_file_fetches(pages: list[_Page], cfg: SampleConfig) -> list[list[_Fetch]]:
    """Each file's fetches: its pages and special fetches interleaved in a seeded order."""
    per_file: list[list[_Fetch]] = [[] for _ in range(cfg.files)]
    for p in pages:
        ctype = "text/html; charset=utf-8" if p.charset == "utf-8" else "text/html"
        per_file[p.file].append(_Fetch(p.url, 200, "OK", ctype, p.payload(), page=p))
    order_rng = _rng(cfg.seed, "order")
    for fetches in per_file:
        order_rng.shuffle(fetches)
    for file_index, f in _special_fetches(cfg):
        fetches = per_file[file_index]
        fetches.insert(order_rng.randint(len(fetches) // 4, max(len(fetches) * 3 // 4, 1)), f)
    return per_file


def _write_warcs(out: Path, names: list[str], per_file: list[list[_Fetch]], seed: int) -> tuple[list[Path], int]:
    """Write one WARC file per name; return their paths and how many were rewritten."""
    ids = _rng(seed, "record-ids")
    clock = [0]
    paths: list[Path] = []
    written = 0
    for name, fetches in zip(names, per_file, strict=True):
        builder = _WarcBuilder(name, ids, clock)
        for f in fetches:
            host = f.url.split("/")[2]
            ip = f"198.51.100.{int(hashlib.sha1(host.encode()).hexdigest(), 16) % 250 + 2}"
            builder.add(f, ip, fetch_ms=ids.randint(40, 2400))
        path = out / name
        written += _write_if_changed(path, bytes(builder.out))
        paths.append(path)
    return paths, written


def _remove_stale_warcs(out: Path, names: list[str]) -> None:
    """Delete sample WARC files left over from a run with more files."""
    for stale in sorted(out.glob("sample-*.warc.gz")):
        if stale.name not in names and re.fullmatch(r"sample-\d{5}\.warc\.gz", stale.name):
            stale.unlink()
            logger.info("removed %s (not part of a %d-file sample)", stale, len(names))


def generate_sample(out_dir: str | Path, cfg: SampleConfig = SampleConfig()) -> list[Path]:  # noqa: B008 (frozen)
    """Write sample-00000.warc.gz … sample-{files-1:05d}.warc.gz and sample_truth.json into out_dir; return the
    WARC paths. The same config gives byte-identical files; unchanged files are not rewritten."""
    t0 = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = _build_pages(cfg)
    _assign(pages, cfg)
    versions = _tool_versions()
    _render_pages(pages, cfg, _known_reasons(out, versions))

    names = [f"sample-{i:05d}.warc.gz" for i in range(cfg.files)]
    per_file = _per_file_fetches(pages, cfg)
    paths, written = _write_warcs(out, names, per_file, cfg.seed)
    _remove_stale_warcs(out, names)
    truth = _truth(cfg, names, per_file, versions)
    written += _write_if_changed(out / TRUTH_FILE, (json.dumps(truth, ensure_ascii=False, indent=1) + "\n").encode())
    logger.info(
        "sample: %d HTML pages in %d WARC files under %s (%d files rewritten) in %.1f s",
        len(pages),
        len(paths),
        out,
        written,
        time.monotonic() - t0,
    )
    return paths


def _page_truth(name: str, f: _Fetch, p: _Page) -> dict[str, Any]:
    """The truth entry of page ``p``, fetched as ``f`` into WARC file ``name``."""
    return {
        "url": p.url,
        "warc_file": name,
        "record_id": f.record_id,
        "offset": f.offset,
        "payload_digest": _digest(f.body),
        "language": p.lang,
        "kind": p.kind,
        "dup_cluster": p.dup_cluster,
        "pii": p.pii,
        "non_pii": p.non_pii,
        "low_quality": None
        if p.low_quality is None
        else {"kind": p.low_quality, "expected_reason": p.expected_reason, "filter": p.drop_filter},
        "title": p.article.title,
        "charset": p.charset,
    }


def _truth(
    cfg: SampleConfig, names: list[str], per_file: list[list[_Fetch]], versions: dict[str, str]
) -> dict[str, Any]:
    pages_out: list[dict[str, Any]] = []
    non_html: list[dict[str, Any]] = []
    non_200: list[dict[str, Any]] = []
    malformed: list[dict[str, Any]] = []
    for name, fetches in zip(names, per_file, strict=True):
        for f in fetches:
            if f.page is not None:
                pages_out.append(_page_truth(name, f, f.page))
            elif f.kind == "non_html":
                non_html.append(
                    {
                        "url": f.url,
                        "warc_file": name,
                        "record_id": f.record_id,
                        "content_type": f.content_type,
                        "offset": f.offset,
                    }
                )
            elif f.kind == "non_200":
                non_200.append(
                    {
                        "url": f.url,
                        "warc_file": name,
                        "record_id": f.record_id,
                        "status": f.status,
                        "content_type": f.content_type,
                        "offset": f.offset,
                    }
                )
            else:
                malformed.append({"warc_file": name, "record_id": f.record_id, "offset": f.offset, "url": f.url})
    return {
        "seed": cfg.seed,
        "config": cfg.model_dump(),
        "verified_with": versions,
        "files": names,
        "pages": pages_out,
        "non_html": non_html,
        "non_200": non_200,
        "malformed": malformed,
    }


def load_truth(out_dir: str | Path) -> dict[str, Any]:
    """The parsed ``sample_truth.json`` written by ``generate_sample`` into ``out_dir``.

    ``{"seed", "config", "verified_with": {tool: version}, "files": [names],
    "pages": [{"url", "warc_file", "record_id" (of the response record), "offset" (of its gzip member),
    "payload_digest", "language", "kind": good|duplicate|low_quality|pii, "dup_cluster": id or null (every
    member of a cluster, the original included, has kind duplicate), "pii": [{"type", "value"}],
    "non_pii": [values that must survive], "low_quality": null or {"kind": keyword_spam|link_list|lorem_ipsum|
    short, "expected_reason": datatrove's reason (or empty_extraction), "filter": the filter that gave it},
    "title", "charset"}], "non_html": [{"url", "warc_file", "record_id", "content_type", "offset"}],
    "non_200": [{..., "status"}], "malformed": [{"warc_file", "record_id", "offset", "url"}]}``.
    ``expected_reason`` is the first failure in FineWeb order (Gopher repetition, Gopher quality, C4, FineWeb)
    on ``trafilatura.extract(html, favor_precision=True, include_comments=False)``, observed at generation.
    """
    return json.loads((Path(out_dir) / TRUTH_FILE).read_text(encoding="utf-8"))

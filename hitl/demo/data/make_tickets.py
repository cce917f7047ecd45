"""Generate the demo's support-ticket triage dataset.

    python hitl/demo/data/make_tickets.py > hitl/demo/data/tickets.jsonl

The tickets are written to a made-up smart-home company (devices, an app, paid plans, and
orders that ship) so that all five labels come up naturally: billing, technical, account,
shipping and other. Everything comes from one seeded `random.Random` and the standard library,
so the command above regenerates the file byte for byte.

Most tickets are plain ("easy"). About one in eight is deliberately "ambiguous": it either
raises two topics (its label is the one the customer asks about first) or says too little to
tell. The label is still the intended one; the point is that a trained model should be sure
of the easy tickets and unsure of these, so the demo has both auto-approved items and items
that go to human review.

Each line is a JSON object: id, subject, body, text (subject, blank line, body: what the
model is trained on), label, difficulty ("easy" or "ambiguous") and, for two-topic tickets,
also_about (the second topic).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable

SEED = 20250601

# Exact counts rather than sampled ones, so the class balance is a fixed, documented fact of
# the dataset. Technical and billing dominate, as they do in real support queues.
LABEL_COUNTS = {
    "technical": 870,
    "billing": 720,
    "account": 570,
    "shipping": 540,
    "other": 300,
}
TWO_TOPIC_RATE = 0.085
VAGUE_RATE = 0.045

# --- vocabulary pools -------------------------------------------------------------------------

HARDWARE = [
    "smart plug",
    "hub",
    "indoor camera",
    "outdoor camera",
    "video doorbell",
    "thermostat",
    "motion sensor",
    "light strip",
    "smart bulb",
    "starter kit",
    "door sensor",
    "water leak sensor",
    "smart lock",
]
PLANS = ["Basic", "Plus", "Pro", "Family", "Business"]
DEVICES = [
    "iPhone 13",
    "iPhone 15",
    "Pixel 7",
    "Pixel 8",
    "Galaxy S23",
    "Galaxy A54",
    "iPad",
    "OnePlus 11",
    "Android tablet",
    "Windows laptop",
    "MacBook",
]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge"]
FEATURES = [
    "energy report",
    "live view",
    "automations",
    "schedules",
    "device list",
    "activity history",
    "settings page",
    "scenes",
    "notifications page",
    "dashboard",
]
INTEGRATIONS = ["Alexa", "Google Home", "HomeKit", "IFTTT", "SmartThings", "Home Assistant"]
ERRORS = [
    "Error 502",
    "Something went wrong",
    "ERR_CONNECTION_RESET",
    "Device not responding",
    "Error code E-104",
    "Request timed out",
    "Unexpected error (500)",
    "Sync failed",
]
CARRIERS = ["UPS", "DHL", "FedEx", "USPS", "Royal Mail", "DPD", "PostNL", "Canada Post"]
COUNTRIES = ["Canada", "Ireland", "Germany", "Australia", "Norway", "Mexico", "Japan", "Poland"]
CITIES = ["Memphis", "Leipzig", "Louisville", "Coventry", "Utrecht", "Toronto", "Reno", "Lyon"]
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elif",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kate",
    "Luis",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sam",
    "Tomasz",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]
MAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "example.org"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PROMO_CODES = ["SPRING20", "WELCOME10", "BLACKFRIDAY", "SAVE15", "HOLIDAY25", "FRIEND5"]
SPAN_OF_DAYS = ["3", "4", "5", "6", "8", "10", "twelve", "fourteen"]


class Slots:
    """Fills `{name}` placeholders with random values that stay fixed within one ticket."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.values: dict[str, str] = {}
        self.makers: dict[str, Callable[[], str]] = {
            "hardware": lambda: rng.choice(HARDWARE),
            "plan": lambda: rng.choice(PLANS),
            "device": lambda: rng.choice(DEVICES),
            "browser": lambda: rng.choice(BROWSERS),
            "feature": lambda: rng.choice(FEATURES),
            "integration": lambda: rng.choice(INTEGRATIONS),
            "error": lambda: rng.choice(ERRORS),
            "carrier": lambda: rng.choice(CARRIERS),
            "country": lambda: rng.choice(COUNTRIES),
            "city": lambda: rng.choice(CITIES),
            "name": lambda: rng.choice(FIRST_NAMES),
            "email": self.email,
            "currency": lambda: rng.choice(["$", "$", "$", "€", "£"]),
            "amount": self.amount,
            "order": self.order,
            "tracking": self.tracking,
            "date": self.date,
            "month": lambda: rng.choice(MONTHS),
            "days": lambda: rng.choice(SPAN_OF_DAYS),
            "promo": lambda: rng.choice(PROMO_CODES),
            "version": lambda: f"{rng.randint(3, 5)}.{rng.randint(0, 19)}.{rng.randint(0, 9)}",
            "pct": lambda: str(rng.choice([12, 37, 45, 60, 71, 88, 99])),
            "n": lambda: str(rng.randint(13, 40)),
            "m": lambda: str(rng.randint(2, 12)),
            "digits": lambda: f"{rng.randint(0, 9999):04d}",
            "num": lambda: str(rng.randint(10000, 99999)),
            "years": lambda: rng.choice(["two", "three", "five", "6", "10"]),
            "username": self.username,
        }

    def new_ticket(self) -> None:
        # One ticket talks about one order, one device, one amount: "The order number is
        # {order}" must repeat the number the first sentence used.
        self.values = {}

    def value(self, name: str) -> str:
        if name not in self.values:
            # "{amount2}" and "{hardware2}" are a second value of the same kind that must
            # differ from the first ("I paid {amount2} but you refunded {amount}").
            base = name.rstrip("2")
            if base != name:
                self.value(base)
            make = self.makers[base]
            drawn = make()
            while base != name and drawn == self.value(base):
                drawn = make()
            self.values[name] = drawn
        return self.values[name]

    def email(self) -> str:
        name = self.rng.choice(FIRST_NAMES).lower()
        return f"{name}{self.rng.randint(1, 99)}@{self.rng.choice(MAIL_DOMAINS)}"

    def username(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES).lower()}_{self.rng.randint(1, 999)}"

    def amount(self) -> str:
        # One currency per ticket, and "{amount2}" is always the larger amount ("went from
        # {amount} to {amount2}", "refunded {amount} but I paid {amount2}").
        currency = self.value("currency")
        cents = self.rng.choice(["00", "99", "49", "95"])
        low = 4
        if "amount" in self.values:
            low = int(self.values["amount"][1:].split(".")[0]) + 5
        return f"{currency}{self.rng.randint(low, low + 200)}.{cents}"

    def order(self) -> str:
        if self.rng.random() < 0.5:
            return f"#{self.rng.randint(100000, 999999)}"
        return f"LM-{self.rng.randint(10000, 99999)}"

    def tracking(self) -> str:
        letters = "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
        return f"{letters}{self.rng.randint(100000000, 999999999)}"

    def date(self) -> str:
        # Always a calendar date: the templates say "on {date}" and "since {date}".
        return f"{self.rng.choice(MONTHS)} {self.rng.randint(1, 28)}"

    def fill(self, template: str) -> str:
        # A hand-rolled fill instead of str.format: the placeholders are looked up through
        # value() so they stay consistent within a ticket.
        out = []
        rest = template
        while "{" in rest:
            before, _, after = rest.partition("{")
            name, _, rest = after.partition("}")
            out.append(before)
            out.append(self.value(name))
        out.append(rest)
        return "".join(out)


# --- per-label templates ----------------------------------------------------------------------
# A label has topics. A topic pairs the subject lines a customer would type with the sentences
# that say what the ticket is about, so the subject and the body of a ticket agree.
# details: supporting sentences for the label that fit any of its topics.
# vague: tickets with too little to go on; their subject and body are both weak.

Topic = tuple[list[str], list[str]]

TOPICS: dict[str, list[Topic]] = {
    "billing": [
        (
            ["Charged twice", "Double charge on my card", "Duplicate payment"],
            [
                "I was charged {amount} twice for my {plan} subscription this month.",
                "My bank statement shows two charges of {amount} on {date}.",
                "You took the payment for my {plan} plan two times on {date}.",
            ],
        ),
        (
            ["Billed after cancelling", "Still being charged", "Cancelled but charged"],
            [
                "I cancelled my {plan} plan on {date} but I was still billed {amount}.",
                "I cancelled weeks ago and you charged my card {amount} again.",
            ],
        ),
        (
            ["Refund request", "Refund for order {order}", "Refund still not received"],
            [
                "I was promised a refund for order {order} {days} days ago and it still "
                "hasn't shown up on my card.",
                "Can I get a refund for the unused months of my annual {plan} plan?",
                "You refunded {amount} but I paid {amount2}, so I'm still owed the rest.",
            ],
        ),
        (
            ["Unexpected charge", "Charge I don't recognize", "What is this charge?"],
            [
                "There is a charge of {amount} from you on my credit card that I don't recognize.",
                "Can you please refund the {amount} charge? I didn't authorize it.",
                "The free trial was supposed to be free but I was charged {amount} on day one.",
            ],
        ),
        (
            ["Invoice needed", "VAT number on invoice", "Need receipts", "Invoices for {month}"],
            [
                "I need an invoice with our company name and VAT number for the last payment.",
                "I'd like copies of the receipts for every payment this year for my expense "
                "report.",
            ],
        ),
        (
            ["Wrong invoice", "Invoice amount wrong", "Tax charged twice"],
            [
                "The invoice for {month} says {amount} but my plan is supposed to be cheaper.",
                "Sales tax was added to my invoice twice.",
            ],
        ),
        (
            ["Payment failed", "Card declined", "Payment problem"],
            [
                "My card keeps getting declined when I try to pay for the {plan} plan, even "
                "though it works everywhere else.",
                "The payment failed but the money was taken from my bank account anyway.",
                "My PayPal payment is stuck as pending and the invoice still says unpaid.",
            ],
        ),
        (
            ["Update card on file", "New credit card", "Change payment method"],
            [
                "How do I update the card you bill for my subscription? The old one expired.",
                "Please charge my new card from now on, the one ending in {digits} is cancelled.",
            ],
        ),
        (
            ["Promo code didn't apply", "Discount not applied", "Student discount missing"],
            [
                "I used the promo code {promo} at checkout but the discount wasn't applied.",
                "I was charged full price even though I signed up with the student discount.",
            ],
        ),
        (
            ["Subscription price went up?", "Price increase", "Overcharged"],
            [
                "Why did my subscription go from {amount} to {amount2}? I never got a notice.",
                "I downgraded to {plan} but I'm still paying the old price.",
            ],
        ),
        (
            ["Annual billing", "Proration question", "Switch to yearly billing"],
            [
                "Please switch me from monthly to annual billing and explain how the "
                "proration works.",
            ],
        ),
        (
            ["Seats on our plan", "Billed for too many seats"],
            [
                "We are billed for {n} seats on the {plan} plan but our team only has {m} people.",
            ],
        ),
        (
            ["Payment terms", "Invoicing for businesses", "Pay by bank transfer?"],
            [
                "Do you offer invoicing with net 30 payment terms for business customers?",
                "Can we pay for the {plan} plan by bank transfer instead of card?",
            ],
        ),
    ],
    "technical": [
        (
            ["App keeps crashing", "App crashes on {device}", "App won't open"],
            [
                "The app crashes every time I open the {feature} on my {device}.",
                "The app freezes on the splash screen on my {device} and never opens.",
            ],
        ),
        (
            ["{error}", "Error after update", "Bug in the latest update"],
            [
                "Since the last update I get '{error}' when I try to load the {feature}.",
                "The {feature} shows '{error}' every time since version {version}.",
            ],
        ),
        (
            ["Device offline", "{hardware} keeps disconnecting", "{hardware} offline"],
            [
                "My {hardware} shows as offline in the app even though it's plugged in and "
                "the light is green.",
                "The {hardware} keeps disconnecting every few hours and I have to power cycle it.",
            ],
        ),
        (
            ["Can't connect to wifi", "Setup stuck", "Pairing fails"],
            [
                "The {hardware} won't connect to my wifi network, setup stops at step 3.",
                "Bluetooth pairing with the {hardware} fails on my {device}.",
            ],
        ),
        (
            ["Firmware update failed", "{hardware} bricked?", "Stuck blinking red"],
            [
                "The firmware update got stuck at {pct}% and now the {hardware} doesn't respond.",
                "The {hardware} is stuck blinking red after a power cut and won't reset.",
            ],
        ),
        (
            ["Notifications stopped", "Alerts delayed", "No push notifications"],
            [
                "Notifications stopped arriving on my {device} after I updated to version "
                "{version}.",
                "Motion alerts arrive about ten minutes late, which makes them useless.",
            ],
        ),
        (
            ["App very slow", "{feature} not loading", "Dashboard not loading"],
            [
                "The {feature} takes over a minute to load and sometimes just times out.",
                "The web dashboard shows a spinning wheel forever in {browser}.",
            ],
        ),
        (
            ["API returns 500", "Webhooks stopped", "API errors"],
            [
                "Your API returns a 500 error for every request to /v2/devices since this morning.",
                "Webhooks to my server stopped firing after the maintenance on {date}.",
            ],
        ),
        (
            ["{integration} integration broken", "{integration} not syncing", "Sync broken"],
            [
                "The {integration} integration stopped syncing and none of my automations run.",
                "Voice commands through {integration} answer 'device not responding'.",
            ],
        ),
        (
            ["Automations not running", "Schedules ignored", "Lights turn on randomly"],
            [
                "Schedules I set in the app are ignored and the lights turn on at random times.",
                "My morning automation hasn't run once since {date}.",
            ],
        ),
        (
            ["Black screen on camera", "Camera live view broken", "No video"],
            [
                "The camera live view is just a black screen, but recordings are saved fine.",
                "The live view on my {device} loads for a second and then goes black.",
            ],
        ),
        (
            ["Export fails", "CSV export broken", "Can't export history"],
            [
                "Exporting my history to CSV fails with '{error}'.",
                "The export button in the {feature} does nothing in {browser}.",
            ],
        ),
        (
            ["Battery draining fast", "Battery life", "{hardware} battery"],
            ["The battery in my {hardware} drains in two days since the firmware update."],
        ),
        (
            ["Wrong temperature reading", "Thermostat readings off", "Sensor readings off"],
            ["The thermostat reads about 5 degrees higher than the actual room temperature."],
        ),
    ],
    "account": [
        (
            ["Password reset email not arriving", "Can't reset password", "Can't log in"],
            [
                "I requested a password reset three times but the email never arrives, not "
                "even in spam.",
                "The login page says my password is wrong even right after I reset it.",
            ],
        ),
        (
            ["Locked out of my account", "Account locked", "Account suspended"],
            [
                "My account is locked after too many login attempts, can you unlock it?",
                "My account says 'suspended' and I don't know why.",
            ],
        ),
        (
            ["Change email address", "New email for my account", "Update login email"],
            ["I'd like to change the email on my account from {email} to my new address."],
        ),
        (
            ["Update my name", "Username change", "Profile settings"],
            [
                "I need to update the name on my profile after getting married.",
                "I can't change my username, the field is greyed out in my profile settings.",
            ],
        ),
        (
            ["Delete my account", "Close my account", "Remove my data"],
            ["Please delete my account and all the data associated with it."],
        ),
        (
            ["GDPR data request", "Data access request", "Copy of my data"],
            ["Please send me a copy of all the personal data you hold about me under GDPR."],
        ),
        (
            ["Lost my phone, 2FA", "Two-factor authentication", "2FA codes not working"],
            [
                "I lost my phone and with it my two-factor codes, so I can't sign in.",
                "Can I turn off two-factor authentication? I have a new phone now.",
            ],
        ),
        (
            ["Merge two accounts", "Two accounts", "Duplicate account"],
            [
                "I accidentally created two accounts with different emails, can you merge them?",
            ],
        ),
        (
            ["Forgot my login email", "Which email did I use?", "Find my account"],
            ["I forgot which email I registered with, can you help me find my account?"],
        ),
        (
            ["Google sign-in", "Log in with password", "Sign-in method"],
            ["I signed up with Google but now I want to log in with a password instead."],
        ),
        (
            ["Add a user to our home", "Household members", "Share access"],
            [
                "How do I give my partner access to our home from their own account?",
                "Please remove {name} from our household members.",
            ],
        ),
        (
            ["Transfer account ownership", "New owner for our home", "Moving out"],
            ["Please transfer ownership of our home to {name}, I'm moving out."],
        ),
        (
            ["Remove old team member", "Admin access", "Workspace users"],
            [
                "A former employee still has admin access to our workspace, please remove them.",
                "How do I make {name} an admin of our workspace?",
            ],
        ),
        (
            ["Account hacked?", "Suspicious login", "Someone is in my account"],
            [
                "Someone logged into my account from a city I've never been to, I think I "
                "was hacked.",
                "I got a login alert for my account from a device I don't own.",
            ],
        ),
        (
            ["Verification link expired", "Can't verify my email", "Confirm my account"],
            [
                "The verification link in the sign-up email says it has expired.",
                "I never got the email to confirm my new account.",
            ],
        ),
    ],
    "shipping": [
        (
            ["Where is my order?", "Order {order} not arrived", "Delivery delayed"],
            [
                "My order {order} was supposed to arrive on {date} and it still hasn't come.",
                "When will order {order} ship? It's been stuck in 'preparing' for {days} days.",
            ],
        ),
        (
            ["Tracking not updating", "Order stuck in transit", "Parcel stuck at depot"],
            [
                "The {carrier} tracking number hasn't updated in {days} days.",
                "My parcel has been sitting at the {carrier} depot in {city} since {date}.",
            ],
        ),
        (
            ["Package damaged", "Arrived broken", "Damaged in transit"],
            [
                "The box arrived crushed and the {hardware} inside is cracked.",
                "The {hardware} arrived with a broken casing, the packaging was torn open.",
            ],
        ),
        (
            ["Wrong item received", "Sent the wrong product", "Not what I ordered"],
            ["I ordered a {hardware} but received a {hardware2} instead."],
        ),
        (
            ["Missing item from order", "Incomplete order", "Something missing in the box"],
            [
                "Only two of the three items in order {order} were in the box.",
                "The {hardware} I got was missing its power adapter.",
            ],
        ),
        (
            ["Change delivery address", "Parcel locker delivery", "Delivery instructions"],
            [
                "Can you change the delivery address for order {order}? I'm moving next week.",
                "Can my order be sent to a parcel locker instead of my home address?",
            ],
        ),
        (
            ["Returned to sender", "Wrong address on label"],
            ["The package was returned to sender because the address label was wrong."],
        ),
        (
            ["Marked delivered but not here", "Lost parcel", "Parcel missing"],
            [
                "Tracking says delivered but there's no package at my door or with the neighbours.",
                "My order was split in two shipments and the second one never arrived.",
            ],
        ),
        (
            ["Failed delivery attempt", "Courier didn't ring", "Missed delivery?"],
            ["The courier left a note saying they tried to deliver but I was home all day."],
        ),
        (
            ["Customs fees", "Import charges", "Duties on my order"],
            [
                "{carrier} wants me to pay {amount} in customs fees before they deliver, is "
                "that right?",
            ],
        ),
        (
            ["Shipping to {country}?", "International delivery", "Delivery times"],
            ["Do you ship to {country}, and how long does delivery take?"],
        ),
        (
            ["Return label", "Return the {hardware}", "How do I send it back?"],
            ["I'd like to return the {hardware}, can you send me a prepaid return label?"],
        ),
        (
            ["Express shipping not express", "Paid for express", "Still processing"],
            [
                "I chose express delivery but the order still shows 'processing' after "
                "{days} days.",
            ],
        ),
    ],
    "other": [
        (
            ["Feature request", "Idea for the app", "Suggestion"],
            [
                "It would be great if the app had a dark mode.",
                "Please add an option to group devices by floor instead of by room.",
                "Do you have plans to support Matter in the future?",
                "I love the {hardware}, any chance of a version in white?",
            ],
        ),
        (
            ["Partnership inquiry", "Reseller in {country}", "Wholesale inquiry"],
            [
                "We manage {n} apartments and are interested in installing your devices, who "
                "should we talk to?",
                "I'd like to become a reseller of your products in {country}.",
            ],
        ),
        (
            ["Press inquiry", "Interview request", "Brand assets"],
            [
                "I'm a journalist writing about smart homes and would like to ask a few questions.",
                "Could you send me your brand assets for a presentation?",
            ],
        ),
        (
            ["Review request", "Collaboration", "Sponsorship"],
            [
                "I run a home automation blog and would love to review your {hardware}.",
                "Would you sponsor our local maker fair in {city}?",
            ],
        ),
        (
            ["Just wanted to say thanks", "Compliment for your team", "Feedback"],
            [
                "Just wanted to say your support agent {name} was incredibly helpful last week.",
                "Your new website looks great, nice work.",
            ],
        ),
        (
            ["Job application", "Are you hiring?", "Internship"],
            [
                "Are you hiring? I'd love to join your engineering team.",
                "I'm a student looking for a summer internship, do you take interns?",
            ],
        ),
        (
            ["Sustainability question", "Packaging", "Materials"],
            ["What are your products made of, and is the packaging recyclable?"],
        ),
        (
            ["Accessibility", "Larger text please", "Accessibility suggestion"],
            ["Could you make the text in the app larger? It's hard to read for my father."],
        ),
        (
            ["About your company", "Physical store?", "Community forum?"],
            [
                "Where is your company based, and do you have a physical store?",
                "Is there a user community or forum where I can share automations?",
            ],
        ),
        (
            ["Gift cards?", "Buying a gift"],
            ["Do you sell gift cards?"],
        ),
        (
            ["Nonprofit discount?", "Discount for schools", "Education program?"],
            ["Are there any discounts for nonprofits or schools?"],
        ),
    ],
}

DETAILS: dict[str, list[str]] = {
    "billing": [
        "The charge was on {date}.",
        "I'm on the {plan} plan.",
        "The last four digits of the card are {digits}.",
        "The invoice number is INV-{num}.",
        "I have attached a screenshot of my bank statement.",
        "This is the second month in a row this has happened.",
        "Our accounts team needs this before the end of the month.",
    ],
    "technical": [
        "I'm on app version {version}.",
        "I'm using the app on my {device}.",
        "I already tried restarting everything and reinstalling the app.",
        "This started after the update on {date}.",
        "Screenshot of the error attached.",
        "It worked perfectly until {date}.",
        "Other devices on the same network work fine.",
    ],
    "account": [
        "My username is {username}.",
        "The account email is {email}.",
        "I still have access to my old email address.",
        "I can confirm my identity if needed.",
        "I'm the owner of the account.",
        "I've changed my password since then just in case.",
    ],
    "shipping": [
        "The order number is {order}.",
        "Tracking number: {tracking}.",
        "I ordered it on {date}.",
        "It was shipped with {carrier}.",
        "It's a gift so I need it soon.",
        "The delivery address on the order is correct.",
        "I've attached photos.",
    ],
    "other": [
        "No rush on this.",
        "Happy to provide more details.",
        "Let me know what you think.",
        "I've been a customer for {years} years.",
        "Thanks for building such a nice product.",
        "I'm sure others would use it too.",
    ],
}

VAGUE: dict[str, Topic] = {
    "billing": (
        ["Question about my plan", "Something's off", "Plan", "Query"],
        [
            "Something doesn't add up with what I paid this month.",
            "Can you explain what exactly I'm paying for?",
            "I think there's a mistake with my plan.",
            "The numbers look wrong to me.",
            "Why is it more than last time?",
        ],
    ),
    "technical": (
        ["Not working", "Problem", "Broken", "Still an issue"],
        [
            "It stopped working again.",
            "Nothing happens when I press it.",
            "It was fine yesterday and now it isn't.",
            "Still broken after what you told me last time.",
            "Doesn't work. Please fix.",
        ],
    ),
    "account": (
        ["Can't get in", "Access", "My details", "Login"],
        [
            "I can't get in anymore.",
            "It says my details are wrong.",
            "I need to sort out my profile, it's a mess.",
            "Need help with my login stuff.",
            "Please reset everything on my side.",
        ],
    ),
    "shipping": (
        ["Still waiting", "Where is it?", "Any update?", "Mine"],
        [
            "Still waiting for it, it's been a while.",
            "Nothing has shown up yet.",
            "When will I get my stuff?",
            "Any news on mine?",
            "It hasn't come.",
        ],
    ),
    "other": (
        ["Quick question", "Hello", "Hi", "Contact"],
        [
            "I have a question, who can I talk to?",
            "Can someone get in touch with me?",
            "Just wondering about something, please call me.",
            "Hello? Is anyone there?",
            "I'd like to speak to a person please.",
        ],
    ),
}

# Which second topic a two-topic ticket mentions, weighted towards the pairs that happen in
# real queues (a damaged delivery and a refund, a broken device and the login, ...).
SECOND_TOPIC = {
    "billing": ["shipping", "shipping", "account", "account", "technical", "other"],
    "technical": ["account", "account", "billing", "shipping", "other", "other"],
    "account": ["technical", "technical", "billing", "billing", "shipping", "other"],
    "shipping": ["billing", "billing", "technical", "technical", "account", "other"],
    "other": ["technical", "technical", "billing", "shipping", "account"],
}

GENERIC_SUBJECTS = [
    "Help",
    "Help needed",
    "Support request",
    "Question",
    "Urgent",
    "Issue",
    "Problem",
    "Please help",
    "Request",
    "(no subject)",
    "Hi",
    "Two things",
]
GREETINGS = [
    "Hi,",
    "Hello,",
    "Hi there,",
    "Dear support,",
    "Hey,",
    "Good morning,",
    "Hello team,",
    "To whom it may concern,",
    "Hi {name} here.",
]
CLOSINGS = [
    "Thanks.",
    "Thank you!",
    "Thanks in advance.",
    "Regards, {name}",
    "Cheers",
    "Please help.",
    "Appreciate it.",
    "Best, {name}",
    "Looking forward to your reply.",
    "Thanks, {name}",
]
MOODS = [
    "This is really frustrating.",
    "It's quite urgent.",
    "Please get back to me soon.",
    "I've been a customer for {years} years.",
    "Hope you can help.",
]
CONNECTORS = ["Also, ", "On top of that, ", "Separately, ", "Unrelated, but ", "Plus, ", "And "]
MISSPELLINGS = {
    "received": "recieved",
    "account": "acount",
    "password": "pasword",
    "subscription": "subscripton",
    "address": "adress",
    "charged": "chraged",
    "definitely": "definately",
    "delivery": "delivrey",
    "update": "upate",
    "refund": "refnud",
    "anyway": "anyways",
    "because": "becuase",
    "notifications": "notifcations",
    "invoice": "invoce",
    "tracking": "traking",
}


# Words that keep their capital letter after a connector ("Also, UPS wants ...").
PROPER_WORDS = {
    word
    for pool in (CARRIERS, INTEGRATIONS, COUNTRIES, CITIES, FIRST_NAMES, DEVICES, BROWSERS)
    for phrase in pool
    for word in phrase.split()
} | {"I", "I'm", "I'd", "I've", "API", "PayPal", "Matter", "Bluetooth"}


def lower_first(sentence: str) -> str:
    first_word = sentence.split(" ", 1)[0].rstrip(",")
    if first_word in PROPER_WORDS:
        return sentence
    return sentence[0].lower() + sentence[1:]


def add_typos(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(rng.choice([1, 1, 2])):
        index = rng.randrange(len(words))
        word = words[index]
        bare = word.strip(".,!?'")
        if bare.lower() in MISSPELLINGS and rng.random() < 0.7:
            words[index] = word.replace(bare, MISSPELLINGS[bare.lower()])
            continue
        if len(bare) < 4 or not bare.isalpha():
            continue
        start = word.index(bare)
        position = rng.randrange(1, len(bare) - 1)
        kind = rng.choice(["swap", "drop", "double"])
        if kind == "swap":
            mangled = bare[:position] + bare[position + 1] + bare[position] + bare[position + 2 :]
        elif kind == "drop":
            mangled = bare[:position] + bare[position + 1 :]
        else:
            mangled = bare[:position] + bare[position] + bare[position:]
        words[index] = word[:start] + mangled + word[start + len(bare) :]
    return " ".join(words)


def make_ticket(
    rng: random.Random, slots: Slots, label: str, difficulty: str
) -> tuple[str, str, str | None]:
    """One (subject, body, also_about) for `label`; difficulty is easy, two_topics or vague."""
    slots.new_ticket()
    also_about = None
    if difficulty == "vague":
        vague_subjects, vague_sentences = VAGUE[label]
        subject = slots.fill(rng.choice(vague_subjects + GENERIC_SUBJECTS[:6]))
        sentences = [slots.fill(rng.choice(vague_sentences))]
        if rng.random() < 0.3:
            sentences.append(slots.fill(rng.choice(MOODS)))
    elif difficulty == "two_topics":
        also_about = rng.choice(SECOND_TOPIC[label])
        first_subjects, first_sentences = rng.choice(TOPICS[label])
        second_subjects, second_sentences = rng.choice(TOPICS[also_about])
        first = slots.fill(rng.choice(first_sentences))
        second = slots.fill(rng.choice(second_sentences))
        # The subject names neither topic, or one of the two, so the subject line cannot
        # settle the question on its own.
        roll = rng.random()
        if roll < 0.5:
            subject = rng.choice(GENERIC_SUBJECTS)
        elif roll < 0.75:
            subject = slots.fill(rng.choice(first_subjects))
        else:
            subject = slots.fill(rng.choice(second_subjects))
        sentences = [first, rng.choice(CONNECTORS) + lower_first(second)]
    else:
        subjects, core = rng.choice(TOPICS[label])
        if rng.random() < 0.12:
            subject = rng.choice(GENERIC_SUBJECTS[:-1])
        else:
            subject = slots.fill(rng.choice(subjects))
        sentences = [slots.fill(rng.choice(core))]
        if rng.random() < 0.55:
            detail = slots.fill(rng.choice(DETAILS[label]))
            # Details usually follow the main point, but people do lead with context.
            sentences.insert(0 if rng.random() < 0.25 else 1, detail)
        if rng.random() < 0.2:
            sentences.append(slots.fill(rng.choice(DETAILS[label])))
        if rng.random() < 0.15:
            sentences.append(slots.fill(rng.choice(MOODS)))
    # De-duplicate a detail drawn twice, keeping order.
    sentences = list(dict.fromkeys(sentences))
    body = " ".join(sentences)
    if rng.random() < 0.55:
        greeting = slots.fill(rng.choice(GREETINGS))
        body = greeting + (" " if rng.random() < 0.6 else "\n") + body
    if rng.random() < 0.5:
        closing = slots.fill(rng.choice(CLOSINGS))
        body = body + (" " if rng.random() < 0.5 else "\n") + closing
    if rng.random() < 0.25:
        body = add_typos(rng, body)
    if rng.random() < 0.06:
        body = body.lower()
    if rng.random() < 0.05:
        body = body.rstrip(".!")
    if rng.random() < 0.03:
        subject = subject.upper()
    elif rng.random() < 0.08:
        subject = subject.lower()
    return subject, body, also_about


def generate(seed: int = SEED) -> list[dict[str, object]]:
    rng = random.Random(seed)
    slots = Slots(rng)
    plan: list[tuple[str, str]] = []
    for label, count in LABEL_COUNTS.items():
        n_two = round(count * TWO_TOPIC_RATE)
        n_vague = round(count * VAGUE_RATE)
        plan += [(label, "two_topics")] * n_two
        plan += [(label, "vague")] * n_vague
        plan += [(label, "easy")] * (count - n_two - n_vague)
    rng.shuffle(plan)

    seen: set[str] = set()
    rows: list[dict[str, object]] = []
    for label, difficulty in plan:
        # Redraw exact duplicates: a ticket in both the training and the test split would
        # flatter the held-out accuracy. Vague tickets are short, so they collide most.
        for _ in range(200):
            subject, body, also_about = make_ticket(rng, slots, label, difficulty)
            text = f"{subject}\n\n{body}"
            if text not in seen:
                break
        else:
            raise RuntimeError(f"could not draw a fresh {difficulty} {label} ticket")
        seen.add(text)
        row: dict[str, object] = {
            "id": f"T{len(rows) + 1:04d}",
            "subject": subject,
            "body": body,
            "text": text,
            "label": label,
            "difficulty": "easy" if difficulty == "easy" else "ambiguous",
        }
        if also_about is not None:
            row["also_about"] = also_about
        rows.append(row)
    return rows


def main() -> None:
    # ensure_ascii keeps the bytes identical whatever the terminal's encoding is.
    lines = [json.dumps(row, ensure_ascii=True) + "\n" for row in generate()]
    sys.stdout.write("".join(lines))


if __name__ == "__main__":
    main()

"""Order entry: SoupBinTCP sessions (:mod:`efsdk.orders.soupbintcp`) carrying OUCH 4.2 (:mod:`efsdk.orders.ouch`)."""

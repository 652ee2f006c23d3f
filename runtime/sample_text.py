"""The built-in text the quantization plan search scores quality on: plain English prose of
a few hundred tokens, written for infertune (no dataset to download). Its job is to give the
float and the quantized model the same contexts, so the KL divergence of their next-token
distributions and their perplexities compare schemes; it is not a benchmark of the model."""

SAMPLE_TEXT = """\
The river runs slowly through the valley in late summer, and the fields on both sides turn \
from green to gold. Farmers cut the wheat in the morning, before the heat settles over the \
land, and stack it in long rows that dry in the afternoon sun. Children carry water to the \
workers, and dogs sleep in the shade of the old stone walls.

In the town, the market opens at dawn. Bakers sell bread that is still warm, and the smell \
of coffee drifts from the small cafe near the square. An old man repairs bicycles under a \
green awning; he has done this for forty years and knows every family by the bells on their \
handlebars. By noon the square is quiet again, and only the pigeons remain.

A library stands at the end of the main street. It was built more than a century ago with \
money raised by the townspeople, who wanted their children to read more than the almanac \
and the newspaper. Today it lends books, teaches computer classes to older residents, and \
keeps the records of every birth, marriage and death in the parish.

Scientists who study rivers say that a healthy river needs floods. The water that spills \
over the banks in spring carries soil and seeds to the fields, fills the wetlands where \
birds nest, and clears the channel of fallen branches. When people build walls to keep the \
water in, the land behind them slowly becomes poorer, and the river cuts deeper into its bed.

Learning a new language as an adult is hard but rewarding. The first months are full of \
small victories: ordering a meal, asking for directions, understanding a joke on the radio. \
Later comes a long plateau, when progress seems to stop. Teachers advise patience, daily \
practice, and above all conversation with native speakers, who forgive mistakes far more \
readily than learners expect.

To bake a simple loaf, mix flour, water, salt and yeast, and knead the dough for ten \
minutes until it is smooth. Let it rise in a warm place for an hour, shape it, and let it \
rise again. Bake it in a hot oven for about forty minutes, until the crust is brown and the \
bottom sounds hollow when tapped.
"""

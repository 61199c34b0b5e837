set terminal pngcairo size 1000,600 noenhanced
set output 'bench/results/rekv_nano_mini/plots/fig2_layer_similarity_K4.png'
set title 'similarity per layer: draft pythia-nano vs target pythia-mini, K=4, 734 rejections (NO-GO)'
set grid
set key below
set xlabel 'target layer (a draft layer at the target layer it maps to)'
set ylabel 'mean cosine'
set yrange [-1:1]
set xrange [-0.5:23.5]
plot 'bench/results/rekv_nano_mini/plots/fig2_layer_similarity_K4.png.dat' index 0 using 1:3 with linespoints lw 2 pt 7 lc rgb '#2171b5' title 'K: draft vs target', \
     '' index 0 using 1:4 with linespoints lw 2 pt 5 lc rgb '#cb181d' title 'V: draft vs target', \
     '' index 1 using 1:2 with linespoints dt 2 pt 6 lc rgb '#6baed6' title 'K: target rejected vs target', \
     '' index 1 using 1:3 with linespoints dt 2 pt 4 lc rgb '#fc9272' title 'V: target rejected vs target', \
     0.7 with lines dt 3 lc rgb '#238b45' title 'GO above 0.7', \
     0.5 with lines dt 3 lc rgb '#cb181d' title 'NO-GO below 0.5'
